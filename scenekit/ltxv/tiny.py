"""Tiny random-weight LTX-Video 0.9.x weights, built offline, in the layout of `Lightricks/LTX-Video`.

The hub repo is a diffusers folder (`model_index.json`, `scheduler/`, `tokenizer/`, `text_encoder/` with
T5-XXL, and an early variant's `transformer/` and `vae/`) with the single-file checkpoints beside it
(`ltxv-13b-0.9.8-distilled.safetensors`: transformer + VAE under Lightricks' key names with their configs
in the file's metadata; `ltxv-spatial-upscaler-0.9.8.safetensors`). `build_tiny_profile_weights` writes
the same at toy sizes, so tests load them through the code that loads the real files. Kept equal to the
real models because scenekit depends on it: the VAE compresses 32x in space and 8x in time (a 0.9.5+ VAE,
timestep-conditioned decoder) and the upsampler doubles the latents' width and height.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scenekit.ltxv.checkpoint import VAE_PREFIX, vae_config, vae_key

TINY_MAX_SEQUENCE_LENGTH = 16
_LATENT = 8
_TEXT = 32
_HEADS, _HEAD_DIM = 2, 8

# Lightricks' block lists (the format of the real files' metadata), at toy widths
TINY_VAE: dict[str, Any] = {
    "_class_name": "CausalVideoAutoencoder",
    "dims": 3,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": _LATENT,
    "encoder_blocks": [
        ["res_x", {"num_layers": 1}],
        ["compress_space_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 1}],
        ["compress_time_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 1}],
        ["compress_all_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 1}],
        ["compress_all_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 1}],
    ],
    "decoder_blocks": [
        ["res_x", {"num_layers": 1, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1, "inject_noise": False}],
    ],
    "scaling_factor": 1.0,
    "norm_layer": "pixel_norm",
    "patch_size": 4,
    "latent_log_var": "uniform",
    "use_quant_conv": False,
    "causal_decoder": False,
    "timestep_conditioning": True,
}
_VAE_WIDTHS = (4, 32)  # encoder and decoder `conv_in` widths
TINY_TRANSFORMER: dict[str, Any] = {
    "_class_name": "Transformer3DModel",
    "in_channels": _LATENT,
    "out_channels": _LATENT,
    "num_attention_heads": _HEADS,
    "attention_head_dim": _HEAD_DIM,
    "cross_attention_dim": _HEADS * _HEAD_DIM,
    "num_layers": 2,
    "caption_channels": _TEXT,
}
TINY_UPSAMPLER: dict[str, Any] = {
    "_class_name": "LatentUpsampler",
    "in_channels": _LATENT,
    "mid_channels": 32,  # GroupNorm(32, mid_channels)
    "num_blocks_per_stage": 1,
    "dims": 3,
    "spatial_upsample": True,
    "temporal_upsample": False,
}
_FP8_MAX = 448.0


@dataclass(frozen=True)
class Architecture:
    """The sizes of every model, in the formats of the files' metadata (`transformer`, `vae`, `upsampler`),
    the VAE's `conv_in` widths (encoder, decoder) and the T5 encoder's `T5Config` arguments."""

    transformer: dict[str, Any] = field(default_factory=lambda: TINY_TRANSFORMER)
    vae: dict[str, Any] = field(default_factory=lambda: TINY_VAE)
    vae_widths: tuple[int, int] = _VAE_WIDTHS
    upsampler: dict[str, Any] = field(default_factory=lambda: TINY_UPSAMPLER)
    text: dict[str, Any] = field(
        default_factory=lambda: {
            "d_model": _TEXT,
            "d_kv": 8,
            "d_ff": 64,
            "num_layers": 1,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
        }
    )


TINY = Architecture()


def scheduler_config() -> dict[str, Any]:
    """The hub repo's scheduler settings (the recipe samples on its own copy without shifting)."""
    return {"shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05, "shift_terminal": 0.1}


def _seeded(factory: Any, seed: int, device: str = "cpu") -> Any:
    """Build a module on `device` under its own seed, keeping the caller's global RNG; non-finite values redrawn."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        with torch.device(device):
            module = factory()
        generator = torch.Generator(device).manual_seed(seed + 1)
        with torch.no_grad():
            for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
                if not tensor.is_floating_point():
                    continue
                if name.endswith("latents_std"):
                    tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator, device=device))
                elif name.endswith("latents_mean"):
                    tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator, device=device))
                elif not torch.isfinite(tensor).all():
                    tensor.copy_(0.02 * torch.randn(tensor.shape, generator=generator, device=device))
        return module.eval()
    finally:
        torch.random.set_rng_state(state)


def _cast(module: Any, dtype: torch.dtype) -> Any:
    """`module` in `dtype` (built in float32; diffusers warns on any `.to(dtype)`, so only when it changes)."""
    return module if dtype == torch.float32 else module.to(dtype)


def _args(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def _tokenizer() -> Any:
    from transformers import T5Tokenizer

    pieces = ["<pad>", "</s>", "<unk>", "\u2581"] + list(string.ascii_letters + string.digits + string.punctuation)
    return T5Tokenizer(vocab=[(piece, -1.0) for piece in pieces], extra_ids=0, model_max_length=512)


def _text_encoder(arch: Architecture, vocab_size: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**{"vocab_size": vocab_size, **arch.text}))


def _transformer(arch: Architecture) -> Any:
    from diffusers import LTXVideoTransformer3DModel

    return LTXVideoTransformer3DModel(**_args(arch.transformer))


def _vae(arch: Architecture) -> Any:
    from diffusers import AutoencoderKLLTXVideo

    return AutoencoderKLLTXVideo(**vae_config(arch.vae, *arch.vae_widths))


def _upsampler(arch: Architecture) -> Any:
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    return LTXLatentUpsamplerModel(**_args(arch.upsampler))


def build_tiny_folder(
    folder: Path, seed: int = 0, arch: Architecture = TINY, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> Path:
    """The diffusers part of the repo: `model_index.json`, scheduler, tokenizer and T5 text encoder (the hub's
    `transformer/` and `vae/` of an early variant are left out: the 0.9.8 profiles never load them)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline

    tokenizer = _tokenizer()
    vocab = arch.text.get("vocab_size", len(tokenizer))
    encoder = _cast(_seeded(lambda: _text_encoder(arch, vocab), seed * 100 + 2, device), dtype)
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**scheduler_config()),
        vae=None,
        text_encoder=encoder,
        tokenizer=tokenizer,
        transformer=None,
    )
    pipe.save_pretrained(folder)  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class
    return folder


def _original_vae_state(arch: Architecture, seed: int, device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The VAE's tensors under Lightricks' names (`vae.*`), checked to map back through `vae_key`."""
    state = _cast(_seeded(lambda: _vae(arch), seed, device), dtype).state_dict()
    tensors = {VAE_PREFIX + _invert(key): value.contiguous() for key, value in state.items()}
    back = {vae_key(k): v for k, v in tensors.items()}
    if set(back) != set(state):
        raise RuntimeError(f"VAE key mapping does not round-trip: {sorted(set(back) ^ set(state))[:4]}")
    channels = state["latents_mean"].shape[0]
    tensors["vae.per_channel_statistics.channel"] = torch.arange(channels, dtype=dtype, device=device)
    tensors["vae.per_channel_statistics.mean-of-stds"] = torch.ones(channels, dtype=dtype, device=device)
    return tensors


def _invert(key: str) -> str:
    """Lightricks' name of a diffusers VAE tensor (the inverse of `VAE_RENAMES` for the keys a VAE has)."""
    special = {
        "latents_mean": "per_channel_statistics.mean-of-means",
        "latents_std": "per_channel_statistics.std-of-means",
        "decoder.scale_shift_table": "decoder.last_scale_shift_table",
    }
    if key in special:
        return special[key]
    if key.startswith("decoder.time_embedder."):
        return "decoder.last_time_embedder." + key[len("decoder.time_embedder.") :]
    parts = key.split(".")
    if parts[1] in ("down_blocks", "up_blocks") and parts[2].isdigit():
        index = int(parts[2])
        sampler = len(parts) > 4 and parts[3] in ("downsamplers", "upsamplers")
        number = 2 * index + (1 if sampler else 0) if parts[1] == "down_blocks" else 2 * index + (1 if sampler else 2)
        head, rest = f"{parts[0]}.{parts[1]}.{number}", parts[5:] if sampler else parts[3:]
    elif parts[1] == "mid_block":
        head, rest = f"{parts[0]}.{'down_blocks.8' if parts[0] == 'encoder' else 'up_blocks.0'}", parts[2:]
    else:
        head, rest = ".".join(parts[:2]), parts[2:]
    name = ".".join([head, *rest])
    for renamed, original in (
        ("resnets", "res_blocks"),
        ("conv_shortcut.conv", "conv_shortcut"),
        ("norm3", "norm3.norm"),
    ):
        name = name.replace(renamed, original)
    return name


def build_tiny_checkpoint(
    folder: Path,
    file_name: str,
    seed: int = 0,
    storage: str = "bfloat16",
    arch: Architecture = TINY,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Path:
    """A model checkpoint in Lightricks' published format (tiny unless `arch` says otherwise): transformer under
    `model.diffusion_model.`, VAE under `vae.`, both configs in the metadata; with a float8 `storage`, the
    transformer blocks' 2-D weights in float8_e4m3fn with a per-tensor `weight_scale`."""
    from diffusers.loaders.single_file_utils import convert_ltx_transformer_checkpoint_to_diffusers
    from safetensors.torch import save_file

    state = _cast(_seeded(lambda: _transformer(arch), seed * 100 + 10, device), dtype).state_dict()
    renames = (("proj_in", "patchify_proj"), ("time_embed", "adaln_single"), ("norm_q", "q_norm"), ("norm_k", "k_norm"))
    tensors = {}
    for key, value in state.items():
        original = key
        for renamed, name in renames:
            original = original.replace(renamed, name)
        tensors["model.diffusion_model." + original] = value.contiguous()
    if set(convert_ltx_transformer_checkpoint_to_diffusers(dict(tensors))) != set(state):
        raise RuntimeError("transformer key mapping out of date with diffusers")
    if storage.startswith("float8"):
        for key in [
            k for k, v in tensors.items() if ".transformer_blocks." in k and k.endswith(".weight") and v.ndim == 2
        ]:
            weight = tensors[key].float()
            scale = weight.abs().max().clamp(min=1e-12) / _FP8_MAX
            tensors[key] = (weight / scale).to(torch.float8_e4m3fn)
            tensors[key.removesuffix(".weight") + ".weight_scale"] = scale.reshape(())
    tensors.update(_original_vae_state(arch, seed * 100 + 11, device, dtype))
    config = {"transformer": arch.transformer, "vae": arch.vae}
    path = Path(folder) / file_name
    save_file(tensors, str(path), metadata={"format": "pt", "config": json.dumps(config)})
    return path


def build_tiny_upsampler(
    folder: Path,
    file_name: str,
    seed: int = 0,
    arch: Architecture = TINY,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Path:
    """A spatial upscaler file like `ltxv-spatial-upscaler-0.9.8.safetensors` (config in the metadata)."""
    from safetensors.torch import save_file

    module = _cast(_seeded(lambda: _upsampler(arch), seed * 100 + 20, device), dtype)
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    path = Path(folder) / file_name
    save_file(state, str(path), metadata={"format": "pt", "config": json.dumps(arch.upsampler)})
    return path


def build_tiny_profile_weights(folder: Path, *, seed: int = 0, profile: str | None = None) -> Path:
    """Tiny weights laid out like `Lightricks/LTX-Video`: the diffusers folders plus, for `profile`, the
    checkpoint and upscaler files it names (all LTX-Video profiles when `profile` is None); a profile whose
    STG perturbs block N gets a transformer of N + 1 blocks, so its guidance runs as written. Returns `folder`."""
    from scenekit.ltxv.settings import LtxvSettings, ltxv_settings
    from scenekit.profiles import available_profiles

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_folder(folder, seed)
    profiles = available_profiles()
    names = [profile] if profile is not None else [n for n, p in profiles.items() if p.backend == "ltxv"]
    for name in names:
        settings: LtxvSettings = ltxv_settings(profiles[name])
        blocks = [TINY_TRANSFORMER["num_layers"] - 1]
        for sampling in (settings.first_pass, settings.second_pass):
            for entry in sampling.guidance.stg_blocks:
                blocks += entry if isinstance(entry, list) else [entry]
        arch = Architecture(transformer={**TINY_TRANSFORMER, "num_layers": max(blocks) + 1})
        files = settings.weights
        assert files.checkpoint.file and files.upsampler.file  # required by the settings
        build_tiny_checkpoint(folder, files.checkpoint.file, seed, settings.precision.storage, arch)
        build_tiny_upsampler(folder, files.upsampler.file, seed)
    return folder
