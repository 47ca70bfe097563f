"""Models from Lightricks' single-file checkpoints (`ltx-2-19b-distilled.safetensors`, `...-fp8.safetensors`).

A published checkpoint holds the whole model under Lightricks' own key names: the transformer and the
text connectors under `model.diffusion_model.`, the text projection under `text_embedding_projection.`,
next to the VAEs and the vocoder. Only the tensors a model needs are read.

* Transformer: diffusers converts the keys (`from_single_file`). The per-tensor scales of pre-quantised
  fp8 weights are folded into the weights first (`w = w_fp8 * weight_scale`), as Lightricks' own loader
  does: `from_single_file` would drop them without a word and load weights that are off by them.
* Text connectors: they are trained with the transformer, so a checkpoint's own connectors go with it
  (not those of the diffusers folder beside it); their keys are renamed as diffusers' conversion script does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

TRANSFORMER_PREFIX = "model.diffusion_model."
PROJECTION_PREFIX = "text_embedding_projection."
_CONNECTORS = {"video_embeddings_connector.": "video_connector.", "audio_embeddings_connector.": "audio_connector."}
_CONNECTOR_RENAMES = (("transformer_1d_blocks", "transformer_blocks"), ("q_norm", "norm_q"), ("k_norm", "norm_k"),
                      ("aggregate_embed", "text_proj_in"))
# Scale names: Lightricks' ltx-core (`weight_scale`, `input_scale`) and ComfyUI (`scale_weight`, `scale_input`).
_WEIGHT_SCALES = (".weight_scale", ".scale_weight")
_INPUT_SCALES = (".input_scale", ".scale_input")


def _read(path: Path, keep: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys() if keep(key)}


def _is_connector(key: str) -> bool:
    return key.startswith(PROJECTION_PREFIX) or any(key.startswith(TRANSFORMER_PREFIX + c) for c in _CONNECTORS)


def _is_transformer(key: str) -> bool:
    return key.startswith(TRANSFORMER_PREFIX) and not _is_connector(key)


def transformer_state(checkpoint: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The transformer's tensors of a checkpoint, in `dtype`, with fp8 weight scales folded in.

    Raises ValueError when there is no transformer, or a scale without its weight.
    """
    state: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    for key, tensor in checkpoint.items():
        if not _is_transformer(key) or key.endswith(_INPUT_SCALES):
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
        state[key] = state[key].to(torch.float32) * scale.to(torch.float32)
    return {key: tensor.to(dtype) for key, tensor in state.items()}


def connectors_state(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text connectors' tensors of a checkpoint under diffusers' `LTX2TextConnectors` names (empty if none)."""
    state = {}
    for key, tensor in checkpoint.items():
        if not _is_connector(key):
            continue
        name = key[len(PROJECTION_PREFIX):] if key.startswith(PROJECTION_PREFIX) else key[len(TRANSFORMER_PREFIX):]
        for original, renamed in _CONNECTORS.items():
            if name.startswith(original):
                name = renamed + name[len(original):]
        for original, renamed in _CONNECTOR_RENAMES:
            name = name.replace(original, renamed)
        state[name] = tensor
    return state


def has_connectors(path: Path) -> bool:
    """Whether a checkpoint file holds text-connector weights."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return any(_is_connector(key) for key in handle.keys())


def load_transformer_file(path: Path, config_folder: Path, dtype: torch.dtype, **options: Any) -> Any:
    """An `LTX2VideoTransformer3DModel` from a checkpoint file, configured by `config_folder/transformer`."""
    from diffusers import LTX2VideoTransformer3DModel

    state = transformer_state(_read(path, _is_transformer), dtype)
    return LTX2VideoTransformer3DModel.from_single_file(state, config=str(config_folder), subfolder="transformer",
                                                        torch_dtype=dtype, **options)


def load_connectors_file(path: Path, config_folder: Path, dtype: torch.dtype) -> Any:
    """`LTX2TextConnectors` with the checkpoint file's weights, configured by `config_folder/connectors`.

    Raises ValueError naming the tensors that do not fit, rather than load connectors partly.
    """
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    model = LTX2TextConnectors.from_config(LTX2TextConnectors.load_config(config_folder, subfolder="connectors"))
    state = {key: tensor.to(dtype) for key, tensor in connectors_state(_read(path, _is_connector)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"the text connectors in {path.name} do not fit diffusers' LTX2TextConnectors "
                         f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    return model.eval()
