"""Latent upsamplers from Lightricks' single files (`ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors`, ...).

A published upscaler is one safetensors file whose `config` metadata (JSON) is the constructor of ltx-core's
`LatentUpsampler` (`in_channels`, `mid_channels`, `num_blocks_per_stage`, `dims`, `spatial_upsample`,
`temporal_upsample`, `spatial_scale`, `rational_resampler`; a key left out takes ltx-core's default) and
whose tensors have the very names of diffusers' `LTX2LatentUpsamplerModel`. The x1.5 upscaler is a rational
resampler (scale 1.5: a 3x pixel shuffle, then a blur and a stride of 2), which diffusers builds from
`rational_spatial_scale=1.5, use_rational_resampler=True`.

Spatially it maps `n` latent cells to `ceil(n * scale)`; scenekit uses only sizes where that is exactly
`n * scale` (for x1.5: an even `n`), so the upsampled latents cover the clip's size cell for cell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scenekit.runtime.state_dicts import load_exactly

# ltx-core's `LatentUpsamplerConfigurator` defaults, for keys a file's config leaves out
_LTX_CORE_DEFAULTS: dict[str, Any] = {
    "in_channels": 128,
    "mid_channels": 512,
    "num_blocks_per_stage": 4,
    "dims": 3,
    "spatial_upsample": True,
    "temporal_upsample": False,
    "spatial_scale": 2.0,
    "rational_resampler": False,
}
_FIXED_BUFFERS = ("upsampler.blur_down.kernel",)  # the rational resampler's binomial blur: not learned


def file_config(path: Path) -> dict[str, Any]:
    """The `LTX2LatentUpsamplerModel` arguments of an upscaler file, from its `config` metadata.

    Raises ValueError when the metadata is not a JSON object or names an upscaler diffusers cannot build."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get("config", "{}")
    try:
        written = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: its `config` metadata is not JSON ({exc})") from None
    if not isinstance(written, dict):
        raise ValueError(f"{path.name}: its `config` metadata is not a JSON object")
    config = {key: written.get(key, default) for key, default in _LTX_CORE_DEFAULTS.items()}
    if config["temporal_upsample"] or not config["spatial_upsample"]:
        raise ValueError(f"{path.name} is not a spatial upscaler (its config: {written})")
    return {
        **{key: config[key] for key in ("in_channels", "mid_channels", "num_blocks_per_stage", "dims")},
        "spatial_upsample": True,
        "temporal_upsample": False,
        "rational_spatial_scale": float(config["spatial_scale"]),
        "use_rational_resampler": bool(config["rational_resampler"]),
    }


def spatial_factor(config: dict[str, Any]) -> float:
    """How much an upsampler of this diffusers config enlarges each side (2.0 without a rational resampler)."""
    return float(config.get("rational_spatial_scale", 2.0)) if config.get("use_rational_resampler", True) else 2.0


def load_upsampler_file(path: Path) -> Any:
    """An `LTX2LatentUpsamplerModel` built from an upscaler file's metadata and loaded with its tensors (on the
    CPU); raises ValueError when the tensors do not fit the config."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
    from safetensors.torch import load_file

    model = LTX2LatentUpsamplerModel(**file_config(path))
    what = f"{path.name} does not fit the upsampler its metadata describes"
    return load_exactly(model, load_file(str(path)), what, assign=False, unset=_FIXED_BUFFERS)
