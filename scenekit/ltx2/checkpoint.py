"""Transformers from Lightricks' single-file checkpoints (`ltx-2-19b-distilled.safetensors`, `...-fp8.safetensors`).

A published checkpoint holds the whole model under Lightricks' own key names: the transformer under
`model.diffusion_model.`, next to the VAEs, the vocoder and the text projection. diffusers converts the
transformer's keys (`from_single_file`); this module picks those keys out first and folds the per-tensor
scales of pre-quantised fp8 weights into the weights (`w = w_fp8 * weight_scale`), as Lightricks' own
loader does, because `from_single_file` would otherwise drop the scales without a word and load weights
that are off by them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TRANSFORMER_PREFIX = "model.diffusion_model."
# Connector weights live under the transformer's prefix in the checkpoint but are not transformer weights.
_NOT_TRANSFORMER = ("video_embeddings_connector.", "audio_embeddings_connector.")
# Scale names: Lightricks' ltx-core (`weight_scale`, `input_scale`) and ComfyUI (`scale_weight`, `scale_input`).
_WEIGHT_SCALES = (".weight_scale", ".scale_weight")
_INPUT_SCALES = (".input_scale", ".scale_input")


def transformer_state(checkpoint: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The transformer's tensors of a full checkpoint, in `dtype`, with fp8 scales folded in.

    Raises ValueError when the checkpoint has no transformer or a scale without its weight.
    """
    state: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    for key, tensor in checkpoint.items():
        if not key.startswith(TRANSFORMER_PREFIX) or key[len(TRANSFORMER_PREFIX):].startswith(_NOT_TRANSFORMER):
            continue
        if key.endswith(_INPUT_SCALES):
            continue  # activation scales are for scaled-fp8 matmuls; weights are computed in `dtype` here
        scale_suffix = next((s for s in _WEIGHT_SCALES if key.endswith(s)), None)
        if scale_suffix is not None:
            scales[key[: -len(scale_suffix)] + ".weight"] = tensor
        else:
            state[key] = tensor
    if not state:
        raise ValueError(f"no transformer weights (keys under `{TRANSFORMER_PREFIX}`) in the checkpoint")
    for key, scale in scales.items():
        if key not in state:
            raise ValueError(f"scale for `{key}` but no such weight in the checkpoint")
        state[key] = (state[key].to(torch.float32) * scale.to(torch.float32)).to(dtype)
    return {key: tensor if key in scales else tensor.to(dtype) for key, tensor in state.items()}


def load_transformer_file(path: Path, config_folder: Path, dtype: torch.dtype, **options: Any) -> Any:
    """An `LTX2VideoTransformer3DModel` from a single-file checkpoint, configured by `config_folder/transformer`."""
    from diffusers import LTX2VideoTransformer3DModel
    from safetensors.torch import load_file

    state = transformer_state(load_file(str(path)), dtype)
    return LTX2VideoTransformer3DModel.from_single_file(state, config=str(config_folder), subfolder="transformer",
                                                        torch_dtype=dtype, **options)
