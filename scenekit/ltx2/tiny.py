"""Tiny random-weight LTX-2 checkpoints, built offline, for tests.

Real LTX-2 weights are tens of gigabytes and live on the Hugging Face hub. The
tests must not download anything, yet they should exercise the *same* loading
and sampling code that a real render uses: ``LTX2Pipeline.from_pretrained``,
``LTX2LatentUpsamplePipeline.from_pretrained``, the condition pipeline made with
``from_pipe``, the VAE/vocoder decode, ... . So this module builds every
component of an LTX-2 diffusers repository at toy size with seeded random
weights and writes it with ``save_pretrained`` in exactly the layout of a real
repository (``model_index.json`` plus one sub-folder per component). Tests then
point the ordinary loading code at that folder with ``local_files_only=True``.

What is kept equal to LTX-2.0, because scenekit's logic depends on it:

* the VAE compresses 32x in space and 8x in time (so frame counts are 8k+1,
  sizes are multiples of 32, and latent frame indices map to pixel frames
  exactly as with the real model);
* audio: 16 kHz mel front end with hop 160 (25 audio latents per second) and a
  vocoder that outputs stereo at 24 kHz (LTX-2.3's, with its bandwidth extender: 48 kHz);
* the scheduler is the "dev" FlowMatchEulerDiscreteScheduler configuration;
* the transformer has 2 blocks, so spatio-temporal guidance on block ``[1]``
  is valid, and ``perturbed_attn=True`` so that STG really perturbs it.
  (diffusers' conversion of LTX-2.0 writes ``perturbed_attn=False``, which
  makes STG a silent no-op; load such a transformer with
  ``perturbed_attn=True``: the option selects a processor and has no weights.)

Everything else (widths, depths, vocabulary) is as small as the classes allow.
Nothing here downloads anything: the tokenizer is built from an in-memory
vocabulary, and every model is constructed from a config.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from scenekit.runtime import nvfp4

__all__ = [
    "TINY_MAX_SEQUENCE_LENGTH",
    "TINY_STG_BLOCKS",
    "build_tiny_latent_upsampler",
    "build_tiny_lora",
    "build_tiny_ltx2",
    "build_tiny_profile_weights",
    "build_tiny_transformer_file",
    "build_tiny_upsampler_file",
    "tiny_scheduler_config",
]

#: Prompt length (tokens) to use with the tiny pipeline. It must be a multiple of
#: the connectors' learnable-register count (8 here; 128 for real LTX-2).
TINY_MAX_SEQUENCE_LENGTH = 16

#: A valid spatio-temporal-guidance block list for the tiny transformer (2 blocks).
TINY_STG_BLOCKS = [1]

# --- sizes ----------------------------------------------------------------------------------------
_TEXT_HIDDEN = 32  # Gemma hidden size == connector width == transformer caption_channels
_TEXT_LAYERS = 2  # -> text_proj_in_factor = layers + 1 hidden states
_VIDEO_LATENT_CHANNELS = 8
_AUDIO_LATENT_CHANNELS = 2
_MEL_BINS = 16  # audio VAE compresses mel bins 4x -> 4 latent mel bins
_AUDIO_PACKED = _AUDIO_LATENT_CHANNELS * (_MEL_BINS // 4)  # audio token width (8)
_HEADS = 2
_HEAD_DIM = 16  # video inner dim 32
_AUDIO_HEAD_DIM = 8  # audio inner dim 16
_REGISTERS = 8

_SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]


def tiny_scheduler_config() -> dict:
    """The LTX-2 "dev" scheduler settings (token-count dynamic shift, terminal 0.1)."""
    return dict(
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )


def _tokenizer():
    from transformers import GemmaTokenizer

    # Byte-fallback BPE without merges: one token per character, unknown
    # characters fall back to their UTF-8 bytes. Ids are fixed by construction.
    pieces = list(_SPECIAL_TOKENS)
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    pieces += ["\u2581"] + [c for c in string.ascii_letters + string.digits + string.punctuation]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    tok = GemmaTokenizer(vocab=vocab, merges=[], model_max_length=1024)
    tok.padding_side = "left"
    return tok, len(vocab)


def _text_encoder(vocab_size: int):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    config = Gemma3Config(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=_TEXT_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=_TEXT_LAYERS,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            query_pre_attn_scalar=16,
            max_position_embeddings=256,
            sliding_window=8,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=8,
            patch_size=2,
        ),
        mm_tokens_per_image=4,
        boi_token_index=_SPECIAL_TOKENS.index("<start_of_image>"),
        eoi_token_index=_SPECIAL_TOKENS.index("<end_of_image>"),
        image_token_index=_SPECIAL_TOKENS.index("<image_soft_token>"),
    )
    return Gemma3ForConditionalGeneration(config).eval()


def tiny_configs(version: str = "2.0", timestep_conditioning: bool = False) -> dict[str, dict[str, Any]]:
    """The constructor arguments of every tiny LTX-2.x component but the text encoder, by pipeline folder
    name (the bench's CPU dry runs build the same sizes)."""
    v23 = version == "2.3"
    # LTX-2.0: one text projection to the Gemma width, connectors at that width. LTX-2.3: a projection per
    # modality straight to the transformer's video and audio widths (the caption projection moved out of the
    # transformer, before the connectors), gated attention in the connectors.
    video_width, audio_width = (_HEADS * _HEAD_DIM, _HEADS * _AUDIO_HEAD_DIM) if v23 else (_TEXT_HIDDEN,) * 2
    connectors_23 = {
        "video_gated_attn": True,
        "audio_gated_attn": True,
        "per_modality_projections": True,
        "video_hidden_dim": video_width,
        "audio_hidden_dim": audio_width,
        "proj_bias": True,
    }
    return {
        "connectors": dict(
            caption_channels=_TEXT_HIDDEN,
            text_proj_in_factor=_TEXT_LAYERS + 1,
            video_connector_num_attention_heads=_HEADS,
            video_connector_attention_head_dim=video_width // _HEADS,
            video_connector_num_layers=1,
            video_connector_num_learnable_registers=_REGISTERS,
            audio_connector_num_attention_heads=_HEADS,
            audio_connector_attention_head_dim=audio_width // _HEADS,
            audio_connector_num_layers=1,
            audio_connector_num_learnable_registers=_REGISTERS,
            rope_type="split",
            **(connectors_23 if v23 else {}),
        ),
        "transformer": dict(
            in_channels=_VIDEO_LATENT_CHANNELS,
            out_channels=_VIDEO_LATENT_CHANNELS,
            num_attention_heads=_HEADS,
            attention_head_dim=_HEAD_DIM,
            cross_attention_dim=_HEADS * _HEAD_DIM,
            vae_scale_factors=(8, 32, 32),
            audio_in_channels=_AUDIO_PACKED,
            audio_out_channels=_AUDIO_PACKED,
            audio_num_attention_heads=_HEADS,
            audio_attention_head_dim=_AUDIO_HEAD_DIM,
            audio_cross_attention_dim=_HEADS * _AUDIO_HEAD_DIM,
            audio_sampling_rate=16000,
            audio_hop_length=160,
            num_layers=2,
            caption_channels=_TEXT_HIDDEN,
            rope_type="split",
            # The attention processor that can skip self-attention for STG. It has no weights;
            # without it `spatio_temporal_guidance_blocks` is silently ignored.
            perturbed_attn=True,
            **(LTX23_TRANSFORMER if v23 else {}),
        ),
        "vae": dict(
            latent_channels=_VIDEO_LATENT_CHANNELS,
            timestep_conditioning=timestep_conditioning,
            patch_size=4,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
            spatial_compression_ratio=32,
            temporal_compression_ratio=8,
            **(VAE_23 if v23 else VAE_20),
        ),
        "audio_vae": dict(
            base_channels=_AUDIO_PACKED,  # per-channel statistics live on the packed (C * mel) axis
            output_channels=2,
            ch_mult=(1, 2, 4),
            num_res_blocks=1,
            latent_channels=_AUDIO_LATENT_CHANNELS,
            sample_rate=16000,
            mel_hop_length=160,
            mel_bins=_MEL_BINS,
        ),
        "vocoder": dict(VOCODER_23 if v23 else VOCODER_20),
        "latent_upsampler": dict(
            in_channels=_VIDEO_LATENT_CHANNELS,
            mid_channels=32,  # GroupNorm(32, mid_channels)
            num_blocks_per_stage=1,
            dims=3,
            spatial_upsample=True,
            temporal_upsample=False,
            rational_spatial_scale=2.0,
            use_rational_resampler=not v23,  # LTX-2.3's x2 upsampler has none
        ),
    }


#: The tiny LTX-2.0 video VAE's blocks: 3 decoder up blocks, each 2x in space and time, with residuals.
VAE_20: dict[str, Any] = {
    "block_out_channels": (8, 8, 8, 8),
    "decoder_block_out_channels": (8, 16, 32),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_type": ("spatiotemporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
}
#: LTX-2.3's video VAE (diffusers' conversion of it, and ltx-core's `decoder_blocks` metadata): 4 decoder up
#: blocks (2x space and time, twice; 2x time; 2x space), no residual upsampling, no channel reduction in the
#: third, zero padding in the decoder. The channel widths here keep the real ones' ratios (256, 512, 512, 1024).
VAE_23: dict[str, Any] = {
    "block_out_channels": (8, 16, 32, 32),
    "decoder_block_out_channels": (8, 16, 16, 32),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True, True),
    "decoder_inject_noise": (False, False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_type": ("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (2, 2, 1, 2),
    "encoder_spatial_padding_mode": "zeros",
    "decoder_spatial_padding_mode": "zeros",
}
#: The LTX-2.0 vocoder: 6 * 5 * 8 = 240 samples per mel frame, 100 mel frames/s -> 24 kHz, like the real one.
VOCODER_20: dict[str, Any] = {
    "in_channels": 2 * _MEL_BINS,
    "hidden_channels": 16,
    "out_channels": 2,
    "upsample_kernel_sizes": [12, 11, 16],
    "upsample_factors": [6, 5, 8],
    "resnet_kernel_sizes": [3],
    "resnet_dilations": [[1, 3]],
    "output_sampling_rate": 24000,
}
#: LTX-2.3's vocoder (`LTX2VocoderWithBWE`): a snake-activated, anti-aliased vocoder to 16 kHz (5 * 4 * 8 = 160
#: samples per mel frame), then a bandwidth extender on the mel spectrogram of that (hop 80) adding to its 3x
#: resampling: 48 kHz stereo, as the real one.
VOCODER_23: dict[str, Any] = {
    "in_channels": 2 * _MEL_BINS,
    "hidden_channels": 32,
    "out_channels": 2,
    "upsample_kernel_sizes": [11, 8, 16],
    "upsample_factors": [5, 4, 8],
    "resnet_kernel_sizes": [3],
    "resnet_dilations": [[1, 3]],
    "bwe_in_channels": 2 * _MEL_BINS,
    "bwe_hidden_channels": 16,
    "bwe_out_channels": 2,
    "bwe_upsample_kernel_sizes": [12, 11, 16],
    "bwe_upsample_factors": [6, 5, 8],
    "bwe_resnet_kernel_sizes": [3],
    "bwe_resnet_dilations": [[1, 3]],
    "filter_length": 512,
    "hop_length": 80,
    "window_length": 512,
    "num_mel_channels": _MEL_BINS,
    "input_sampling_rate": 16000,
    "output_sampling_rate": 48000,
}

#: The transformer options of LTX-2.3 (22B) over LTX-2.0's (diffusers' LTX-2.3 configuration).
LTX23_TRANSFORMER: dict[str, Any] = {
    "gated_attn": True,
    "cross_attn_mod": True,
    "audio_gated_attn": True,
    "audio_cross_attn_mod": True,
    "use_prompt_embeddings": False,
}


def _connectors(version: str = "2.0"):
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    return LTX2TextConnectors(**tiny_configs(version)["connectors"]).eval()


def _transformer(version: str = "2.0"):
    from diffusers import LTX2VideoTransformer3DModel

    model = LTX2VideoTransformer3DModel(**tiny_configs(version)["transformer"])
    return model.eval()  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class


def _video_vae(timestep_conditioning: bool = False, version: str = "2.0"):
    from diffusers import AutoencoderKLLTX2Video

    vae = AutoencoderKLLTX2Video(**tiny_configs(version, timestep_conditioning)["vae"])
    return vae.eval()  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class


def _audio_vae():
    from diffusers import AutoencoderKLLTX2Audio

    return AutoencoderKLLTX2Audio(**tiny_configs()["audio_vae"]).eval()


def _vocoder(version: str = "2.0"):
    from diffusers.pipelines.ltx2 import LTX2Vocoder
    from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE

    cls = LTX2VocoderWithBWE if version == "2.3" else LTX2Vocoder
    return cls(**tiny_configs(version)["vocoder"]).eval()


def _latent_upsampler_of(config: dict[str, Any]):
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    return LTX2LatentUpsamplerModel(**config).eval()


def _latent_upsampler(version: str = "2.0"):
    return _latent_upsampler_of(tiny_configs(version)["latent_upsampler"])


def _finalize(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Give every parameter and buffer a defined, seeded value.

    Constructors mostly initialise weights, but some parameters may be created
    with ``torch.empty`` (uninitialised memory: random NaNs). To be safe and
    deterministic, any non-finite tensor is re-drawn, and the VAE statistics
    buffers get non-trivial values so that normalisation bugs show up in tests.
    """
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            if name.endswith("latents_std"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("latents_mean"):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
            elif not torch.isfinite(tensor).all() or tensor.abs().max() > 1e4:
                # Uninitialised memory (NaN/inf/garbage): replace with small seeded values.
                tensor.copy_(0.02 * torch.randn(tensor.shape, generator=generator))
    return module


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Build under fixed seeds without disturbing the caller's global torch RNG."""
    state = torch.random.get_rng_state()
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def _seeded(factory, seed: int, salt: int):
    """Build one component under its own seed, so components don't depend on build order."""
    torch.manual_seed(seed * 1000 + salt)
    module = factory()
    return _finalize(module, torch.Generator().manual_seed(seed * 1000 + salt + 500))


def build_tiny_ltx2(
    folder: Path, *, seed: int = 0, vae_timestep_conditioning: bool = False, version: str = "2.0"
) -> Path:
    """Build a tiny random LTX-2 pipeline and save it to ``folder`` like a hub repo.

    ``folder`` receives ``model_index.json`` and the sub-folders ``scheduler``,
    ``tokenizer``, ``text_encoder``, ``connectors``, ``transformer``, ``vae``,
    ``audio_vae`` and ``vocoder``. Load it with
    ``LTX2Pipeline.from_pretrained(folder, local_files_only=True)``. The same
    ``seed`` always gives identical weights. Returns ``folder``.

    Use ``max_sequence_length=TINY_MAX_SEQUENCE_LENGTH`` (any multiple of 8
    works; it is just the fastest) and STG blocks ``TINY_STG_BLOCKS`` with it.

    ``vae_timestep_conditioning=True`` builds a timestep-conditioned VAE decoder
    (as in LTX-Video 0.9.1+), so the ``decode_timestep``/``decode_noise_scale``
    code path can be tested; the LTX-2.0 VAE does not have one.

    ``version="2.3"`` builds LTX-2.3's transformer and text connectors (gated attention, cross-attention
    modulation, the caption projection before the connectors, per modality), its video VAE (other decoder
    blocks) and its vocoder (with a bandwidth extender, 48 kHz).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2Pipeline

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _global_rng_kept():
        tokenizer, vocab_size = _tokenizer()
        pipe = LTX2Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(**tiny_scheduler_config()),
            vae=_seeded(lambda: _video_vae(vae_timestep_conditioning, version), seed, 1),
            audio_vae=_seeded(_audio_vae, seed, 2),
            text_encoder=_seeded(lambda: _text_encoder(vocab_size), seed, 3),
            tokenizer=tokenizer,
            connectors=_seeded(lambda: _connectors(version), seed, 4),
            transformer=_seeded(lambda: _transformer(version), seed, 5),
            vocoder=_seeded(lambda: _vocoder(version), seed, 6),
        )
        pipe.save_pretrained(folder)  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class
    return folder


def build_tiny_latent_upsampler(folder: Path, *, seed: int = 0) -> Path:
    """Build a tiny x2 spatial latent upsampler and save it to ``folder``.

    The layout is that of a diffusers ``LTX2LatentUpsamplePipeline`` repository
    (as the LTX-2.x spatial upscaler repos on the hub are): ``model_index.json``,
    ``latent_upsampler/`` and ``vae/``. The VAE is the same one that
    ``build_tiny_ltx2`` makes with the same ``seed`` and default options
    (identical weights), as the
    upsampler works in that VAE's latent space. Load it with
    ``LTX2LatentUpsamplePipeline.from_pretrained(folder, local_files_only=True)``;
    the model alone also loads with
    ``LTX2LatentUpsamplerModel.from_pretrained(folder, subfolder="latent_upsampler")``,
    the layout of the ``latent_upsampler`` folder in ``Lightricks/LTX-2``.
    Returns ``folder``.
    """
    from diffusers import LTX2LatentUpsamplePipeline

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _global_rng_kept():
        pipe = LTX2LatentUpsamplePipeline(
            vae=_seeded(_video_vae, seed, 1),
            latent_upsampler=_seeded(_latent_upsampler, seed, 7),
        )
        pipe.save_pretrained(folder)  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class
    return folder


def build_tiny_profile_weights(folder: Path, *, seed: int = 0, profile: str | None = None) -> Path:
    """Tiny weights for LTX-2 profiles, laid out like `Lightricks/LTX-2`: the pipeline components plus
    `latent_upsampler/`. Point `$SCENEKIT_MODELS/<profile>` or the spec's `models:` at it.

    With `profile`, also the files that profile names beside the folders, in the published formats: its
    single-file transformer (fp8 with scales, or NVFP4, as the profile stores its weights) and its LoRA.
    Returns `folder`."""
    from scenekit.ltx2.settings import ltx2_settings
    from scenekit.profiles import available_profiles

    settings = ltx2_settings(available_profiles()[profile]) if profile is not None else None
    version = settings.model_version if settings is not None else "2.0"
    build_tiny_ltx2(folder, seed=seed, version=version)
    with _global_rng_kept():
        _seeded(lambda: _latent_upsampler(version), seed, 7).save_pretrained(Path(folder) / "latent_upsampler")
    if settings is not None:
        transformer, lora = settings.weights.transformer, settings.weights.distilled_lora
        upsampler = settings.weights.upsampler_ref
        factors = settings.upsample_factors()
        if upsampler.file is not None and len(factors) == 1:
            build_tiny_upsampler_file(folder, upsampler.file, float(factors.pop()), seed=seed)
        if transformer is not None and transformer.file is not None:
            build_tiny_transformer_file(
                folder, transformer.file, seed=seed, storage=settings.precision.storage, version=version
            )
        if lora is not None and lora.file is not None and any(stage.lora for stage in settings.stages):
            build_tiny_lora(folder, lora.file, seed=seed)
    return Path(folder)


def build_tiny_upsampler_file(folder: Path, file_name: str, scale: float, *, seed: int = 0) -> Path:
    """A tiny spatial upscaler as Lightricks publish them (`ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors`):
    one file with ltx-core's `LatentUpsampler` config as JSON in its `config` metadata (`spatial_scale`,
    `rational_resampler`: a rational resampler for any scale but LTX-2.3's x2) and the model's tensors, saved
    as `folder/file_name`. Returns its path."""
    import json

    from safetensors.torch import save_file

    config = dict(tiny_configs("2.3")["latent_upsampler"], rational_spatial_scale=scale)
    config["use_rational_resampler"] = scale != 2.0
    with _global_rng_kept():
        model = _seeded(lambda: _latent_upsampler_of(config), seed, 11)
    written = {
        "_class_name": "LatentUpsampler",
        **{key: config[key] for key in ("in_channels", "mid_channels", "num_blocks_per_stage", "dims")},
        "spatial_upsample": True,
        "temporal_upsample": False,
        "spatial_scale": scale,
        "rational_resampler": config["use_rational_resampler"],
    }
    path = Path(folder) / file_name
    tensors = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt", "config": json.dumps(written)})
    return path


# diffusers' names -> Lightricks' names, the inverse of `convert_ltx2_transformer_to_diffusers`.
_TO_ORIGINAL = (
    ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
    ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
    ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
    ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
    ("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
    ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
    ("proj_in", "patchify_proj"),
    ("norm_q", "q_norm"),
    ("norm_k", "k_norm"),
)
_FP8_MAX = 448.0  # largest float8_e4m3fn


def _original_key(key: str) -> str:
    for diffusers_name, original in _TO_ORIGINAL:
        key = key.replace(diffusers_name, original)
    for diffusers_name, original in (
        ("time_embed.", "adaln_single."),
        ("audio_time_embed.", "audio_adaln_single."),
        ("prompt_adaln.", "prompt_adaln_single."),
        ("audio_prompt_adaln.", "audio_prompt_adaln_single."),
    ):
        if key.startswith(diffusers_name):
            key = original + key[len(diffusers_name) :]
    return "model.diffusion_model." + key


def _original_connectors(seed: int, version: str) -> dict[str, torch.Tensor]:
    """Tiny text connectors (another seed than `connectors/`) under Lightricks' key names."""
    from scenekit.ltx2.checkpoint import connectors_state

    with _global_rng_kept():
        state = _seeded(lambda: _connectors(version), seed, 10).state_dict()
    tensors = {}
    for key, value in state.items():
        original = (
            key.replace("transformer_blocks", "transformer_1d_blocks")
            .replace("norm_q", "q_norm")
            .replace("norm_k", "k_norm")
        )
        if original.startswith(("text_proj_in.", "video_text_proj_in.", "audio_text_proj_in.")):
            original = "text_embedding_projection." + original.replace("text_proj_in", "aggregate_embed")
        else:
            original = "model.diffusion_model." + original.replace(
                "video_connector.", "video_embeddings_connector.", 1
            ).replace("audio_connector.", "audio_embeddings_connector.", 1)
        tensors[original] = value.contiguous()
    if set(connectors_state(tensors)) != set(state):
        raise RuntimeError("connector key mapping does not round-trip")
    return tensors


def build_tiny_transformer_file(
    folder: Path, file_name: str, *, seed: int = 0, storage: str = "bfloat16", version: str = "2.0"
) -> Path:
    """A tiny transformer as a single-file checkpoint in Lightricks' published format, saved as
    `folder/file_name` (like `ltx-2-19b-distilled.safetensors` beside the diffusers folders).

    Keys are Lightricks' own (`model.diffusion_model.*`); the file also holds text connectors (another seed
    than `folder/connectors/`) and a VAE tensor, as the real all-in-one checkpoints do. With a float8
    `storage`, every 2-D block weight is stored as float8_e4m3fn with a per-tensor `weight_scale` (and an
    `input_scale`), as pre-quantised checkpoints are; with `nvfp4`, in NVFP4 (`scenekit.runtime.nvfp4`). The weights differ from those
    in `folder/transformer/` (another seed), so a test can tell which were loaded. Returns the path.
    """
    from safetensors.torch import save_file

    from scenekit.ltx2.checkpoint import transformer_keys_to_diffusers

    with _global_rng_kept():
        state = _seeded(lambda: _transformer(version), seed, 9).state_dict()
    tensors = {_original_key(key): value.contiguous() for key, value in state.items()}
    back = transformer_keys_to_diffusers(dict(tensors))
    if set(back) != set(state):  # the inverse mapping must round-trip through diffusers' own conversion
        raise RuntimeError(f"key mapping out of date with diffusers: {sorted(set(back) ^ set(state))[:5]}")
    layers = [
        k.removesuffix(".weight")
        for k, v in tensors.items()
        if ".transformer_blocks." in k and k.endswith(".weight") and v.ndim == 2
    ]
    for layer in layers:
        weight = tensors[f"{layer}.weight"].float()
        if storage.startswith("float8"):
            scale = weight.abs().max().clamp(min=1e-12) / _FP8_MAX
            tensors[f"{layer}.weight"] = (weight / scale).to(torch.float8_e4m3fn)
            tensors[f"{layer}.weight_scale"] = scale.reshape(())
            tensors[f"{layer}.input_scale"] = torch.tensor(1.0)
        elif storage == "nvfp4" and weight.shape[1] % nvfp4.BLOCK == 0:
            packed, block_scales, tensor_scale = nvfp4.quantize(weight)
            tensors[f"{layer}.weight"] = packed
            tensors[f"{layer}.weight_scale"] = block_scales
            tensors[f"{layer}.weight_scale_2"] = tensor_scale.float()
    tensors.update(_original_connectors(seed, version))
    tensors["vae.per_channel_statistics.mean-of-means"] = torch.zeros(_VIDEO_LATENT_CHANNELS)
    path = Path(folder) / file_name
    save_file(tensors, str(path), metadata={"format": "pt", "model_version": f"{version}.0"})
    return path


def build_tiny_lora(
    folder: Path,
    weight_name: str | Path,
    *,
    seed: int = 0,
    diffusers_format: bool = False,
    reference_downscale_factor: int | None = None,
) -> Path:
    """A tiny random LoRA for the tiny model in `folder`, saved as `folder/weight_name` in the format
    Lightricks publish LoRAs in (like `ltx-2-19b-distilled-lora-384.safetensors`): transformer layers
    under `diffusion_model.`, the text-embedding projection under `text_embedding_projection.`
    (diffusers converts both on load); with `diffusers_format`, under `transformer.` and `connectors.`
    as diffusers saves them. With `reference_downscale_factor`, an IC-LoRA: the factor is in the file's
    metadata, as Lightricks publish IC-LoRAs. Returns its path."""
    from diffusers import LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    rank = 2
    with _global_rng_kept():
        torch.manual_seed(seed * 1000 + 8)
        transformer = LTX2VideoTransformer3DModel.from_pretrained(folder, subfolder="transformer")
        transformer.add_adapter(
            LoraConfig(
                r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
            )
        )
        prefix, projection_prefix = (
            ("transformer", "connectors.") if diffusers_format else ("diffusion_model", "text_embedding_projection.")
        )
        tensors = {
            f"{prefix}.{key}": value.contiguous() for key, value in get_peft_model_state_dict(transformer).items()
        }
        connectors = LTX2TextConnectors.from_pretrained(folder, subfolder="connectors")
        for name in ("text_proj_in", "video_text_proj_in", "audio_text_proj_in"):  # LTX-2.0's, LTX-2.3's
            projection = getattr(connectors, name, None)
            if projection is None:
                continue
            written = name if diffusers_format else name.replace("text_proj_in", "aggregate_embed")
            tensors[f"{projection_prefix}{written}.lora_A.weight"] = torch.randn(rank, projection.in_features) * 0.02
            tensors[f"{projection_prefix}{written}.lora_B.weight"] = torch.randn(projection.out_features, rank) * 0.02
    path = Path(folder) / weight_name
    metadata = {"format": "pt"}
    if reference_downscale_factor is not None:
        metadata["reference_downscale_factor"] = str(reference_downscale_factor)
    save_file(tensors, str(path), metadata=metadata)
    return path
