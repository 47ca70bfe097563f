"""LTX-Video models from Lightricks' single-file checkpoints (`ltxv-13b-0.9.8-distilled.safetensors`,
`ltxv-spatial-upscaler-0.9.8.safetensors`, ...).

A published model checkpoint holds the transformer under `model.diffusion_model.` and the VAE under `vae.`,
in Lightricks' own key names, with the models' configurations as JSON in the file's metadata (`config`:
`{"transformer": {...}, "vae": {...}}`), which is what Lightricks' own loader builds the models from. So
does this module: the architecture comes from the file, the key names go through diffusers' conversion
(the transformer) or the 0.9.5+ VAE table below, and every tensor must fit (strict loading), so a file
that does not match its metadata is an error naming the tensors, never a half-loaded model. The upscaler
file holds `LatentUpsampler` tensors under diffusers' own names and its config as the whole `config`.

Float8 checkpoints: per-tensor `weight_scale`s (when present) are folded into the weights, as for LTX-2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from scenekit.runtime.state_dicts import load_exactly

TRANSFORMER_PREFIX = "model.diffusion_model."
VAE_PREFIX = "vae."
_TRANSFORMER_KEYS = (
    "in_channels",
    "out_channels",
    "num_attention_heads",
    "attention_head_dim",
    "cross_attention_dim",
    "num_layers",
    "caption_channels",
)
_UPSAMPLER_KEYS = (
    "in_channels",
    "mid_channels",
    "num_blocks_per_stage",
    "dims",
    "spatial_upsample",
    "temporal_upsample",
)
_WEIGHT_SCALES = (".weight_scale", ".scale_weight")
_INPUT_SCALES = (".input_scale", ".scale_input")
_DOWNSAMPLES = {"compress_space_res": "spatial", "compress_time_res": "temporal", "compress_all_res": "spatiotemporal"}

# Lightricks' names -> diffusers' for the 0.9.5+ VAE (0.9.5, 0.9.7, 0.9.8), applied in order, each once, as
# diffusers' `convert_ltx_vae_checkpoint_to_diffusers` does for the real 2048-channel VAE (it picks its table
# by that channel count, which a small VAE of the same layout does not have).
VAE_RENAMES = (
    ("vae.", ""),
    ("up_blocks.0", "mid_block"),
    ("up_blocks.1", "up_blocks.0.upsamplers.0"),
    ("up_blocks.2", "up_blocks.0"),
    ("up_blocks.3", "up_blocks.1.upsamplers.0"),
    ("up_blocks.4", "up_blocks.1"),
    ("up_blocks.5", "up_blocks.2.upsamplers.0"),
    ("up_blocks.6", "up_blocks.2"),
    ("up_blocks.7", "up_blocks.3.upsamplers.0"),
    ("up_blocks.8", "up_blocks.3"),
    ("down_blocks.0", "down_blocks.0"),
    ("down_blocks.1", "down_blocks.0.downsamplers.0"),
    ("down_blocks.2", "down_blocks.1"),
    ("down_blocks.3", "down_blocks.1.downsamplers.0"),
    ("down_blocks.4", "down_blocks.2"),
    ("down_blocks.5", "down_blocks.2.downsamplers.0"),
    ("down_blocks.6", "down_blocks.3"),
    ("down_blocks.7", "down_blocks.3.downsamplers.0"),
    ("down_blocks.8", "mid_block"),
    ("conv_shortcut", "conv_shortcut.conv"),
    ("res_blocks", "resnets"),
    ("norm3.norm", "norm3"),
    ("per_channel_statistics.mean-of-means", "latents_mean"),
    ("per_channel_statistics.std-of-means", "latents_std"),
    ("last_time_embedder", "time_embedder"),
    ("last_scale_shift_table", "scale_shift_table"),
)
_VAE_DROPPED = ("per_channel_statistics.channel", "per_channel_statistics.mean-of-stds")


def file_config(path: Path) -> dict[str, Any]:
    """The `config` JSON of a checkpoint's metadata; ValueError when the file has none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "config" not in metadata:
        raise ValueError(f"{path.name} has no `config` in its metadata (is it an LTX-Video checkpoint?)")
    config: dict[str, Any] = json.loads(metadata["config"])
    return config


def _pick(config: dict[str, Any], keys: tuple[str, ...], what: str, path: Path) -> dict[str, Any]:
    missing = [key for key in keys if key not in config]
    if missing:
        raise ValueError(f"{path.name}: the {what} config in its metadata lacks {missing}")
    return {key: config[key] for key in keys}


def transformer_config(path: Path) -> dict[str, Any]:
    """diffusers `LTXVideoTransformer3DModel` arguments from the checkpoint's metadata."""
    return _pick(file_config(path).get("transformer", {}), _TRANSFORMER_KEYS, "transformer", path)


def vae_config(original: dict[str, Any], encoder_width: int, decoder_width: int) -> dict[str, Any]:
    """diffusers `AutoencoderKLLTXVideo` arguments for a 0.9.5+ VAE from Lightricks' block lists
    (`encoder_blocks`, `decoder_blocks`); `encoder_width` and `decoder_width` are the widths of the encoder's
    and the decoder's `conv_in`. The decoder's widths shrink by each block's multiplier from its input, as in
    every 0.9.5+ VAE. ValueError for blocks of another kind."""
    layers, downsample, widths = [], [], [encoder_width]
    for kind, options in original["encoder_blocks"]:
        if kind == "res_x":
            layers.append(options["num_layers"])
        elif kind in _DOWNSAMPLES:
            downsample.append(_DOWNSAMPLES[kind])
            widths.append(widths[-1] * options.get("multiplier", 1))
        else:
            raise ValueError(f"VAE encoder block `{kind}` is not one of a 0.9.5+ VAE")
    decoder_layers, inject, residual, factor = [], [], [], []
    for kind, options in original["decoder_blocks"]:
        if kind == "res_x":
            decoder_layers.append(options["num_layers"])
            inject.append(bool(options.get("inject_noise", False)))
        elif kind == "compress_all":
            residual.append(bool(options.get("residual", False)))
            factor.append(options.get("multiplier", 1))
        else:
            raise ValueError(f"VAE decoder block `{kind}` is not one of a 0.9.5+ VAE")
    decoder_widths = [decoder_width]
    for multiplier in factor[:-1]:
        decoder_widths.append(decoder_widths[-1] // multiplier)
    return {
        "in_channels": original.get("in_channels", 3),
        "out_channels": original.get("out_channels", 3),
        "latent_channels": original["latent_channels"],
        "block_out_channels": tuple(widths),
        "down_block_types": ("LTXVideo095DownBlock3D",) * len(downsample),
        "decoder_block_out_channels": tuple(reversed(decoder_widths)),
        "layers_per_block": tuple(layers),
        "decoder_layers_per_block": tuple(reversed(decoder_layers)),
        "spatio_temporal_scaling": (True,) * len(downsample),
        "decoder_spatio_temporal_scaling": (True,) * len(factor),
        "decoder_inject_noise": tuple(reversed(inject)),
        "downsample_type": tuple(downsample),
        "upsample_residual": tuple(reversed(residual)),
        "upsample_factor": tuple(reversed(factor)),
        "timestep_conditioning": bool(original.get("timestep_conditioning", False)),
        "patch_size": original.get("patch_size", 4),
        "patch_size_t": 1,
        "scaling_factor": original.get("scaling_factor", 1.0),
        "encoder_causal": True,
        "decoder_causal": bool(original.get("causal_decoder", False)),
        "spatial_compression_ratio": 32,
        "temporal_compression_ratio": 8,
    }


def vae_key(key: str) -> str:
    """A VAE tensor's diffusers name from its name in the checkpoint."""
    for original, renamed in VAE_RENAMES:
        key = key.replace(original, renamed)
    return key


def _read(path: Path, prefix: str, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix`, one at a time to `device` in `dtype`, with float8 weight scales folded in."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=device) as handle:
        keys = [k for k in handle.keys() if k.startswith(prefix) and not k.endswith(_INPUT_SCALES)]  # noqa: SIM118 - safe_open has keys() but no __iter__
        scales = {k[: -len(s)] + ".weight": k for k in keys for s in _WEIGHT_SCALES if k.endswith(s)}
        state = {}
        for key in keys:
            if key.endswith(_WEIGHT_SCALES):
                continue
            tensor = handle.get_tensor(key)
            if key in scales:
                tensor = tensor.to(torch.float32) * handle.get_tensor(scales[key]).to(torch.float32)
            state[key] = tensor.to(dtype)
    if not state:
        raise ValueError(f"{path.name}: no tensors under `{prefix}`")
    return state


def load_transformer_file(path: Path, dtype: torch.dtype, device: str) -> Any:
    """`LTXVideoTransformer3DModel` on `device` from a checkpoint file, configured by its metadata."""
    from accelerate import init_empty_weights
    from diffusers import LTXVideoTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_ltx_transformer_checkpoint_to_diffusers

    with init_empty_weights():  # parameters on the meta device until the file's tensors are assigned
        model = LTXVideoTransformer3DModel.from_config(transformer_config(path))
    state = convert_ltx_transformer_checkpoint_to_diffusers(_read(path, TRANSFORMER_PREFIX, dtype, device))
    return load_exactly(model, state, f"{path.name} does not fit diffusers' LTXVideoTransformer3DModel")


def load_vae_file(path: Path, dtype: torch.dtype, device: str) -> Any:
    """`AutoencoderKLLTXVideo` on `device` from the VAE in a checkpoint file, configured by its metadata."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLLTXVideo

    original = file_config(path).get("vae")
    if not isinstance(original, dict) or "encoder_blocks" not in original:
        raise ValueError(f"{path.name}: no VAE config (`vae.encoder_blocks`) in its metadata")
    state = {vae_key(k): v for k, v in _read(path, VAE_PREFIX, dtype, device).items() if not k.endswith(_VAE_DROPPED)}
    config = vae_config(
        original, state["encoder.conv_in.conv.weight"].shape[0], state["decoder.conv_in.conv.weight"].shape[0]
    )
    with init_empty_weights():
        model = AutoencoderKLLTXVideo.from_config(config)
    return load_exactly(model, state, f"{path.name} does not fit diffusers' AutoencoderKLLTXVideo")


def load_upsampler_file(path: Path, dtype: torch.dtype, device: str) -> Any:
    """`LTXLatentUpsamplerModel` on `device` from an upscaler file (`ltxv-spatial-upscaler-0.9.8.safetensors`)."""
    from accelerate import init_empty_weights
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    config = _pick(file_config(path), _UPSAMPLER_KEYS, "upsampler", path)
    with init_empty_weights():
        model = LTXLatentUpsamplerModel.from_config(config)
    return load_exactly(
        model, _read(path, "", dtype, device), f"{path.name} does not fit diffusers' LTXLatentUpsamplerModel"
    )
