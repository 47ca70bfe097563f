"""Models from Lightricks' single-file checkpoints (`ltx-2-19b-distilled.safetensors`, `...-fp8.safetensors`).

A published checkpoint holds the whole model under Lightricks' own key names: the transformer and the
text connectors under `model.diffusion_model.`, the text projection under `text_embedding_projection.`,
next to the VAEs and the vocoder. Only the tensors a model needs are read.

* Transformer: diffusers' own conversion renames the keys. The per-tensor scales of pre-quantised fp8
  weights are folded into the weights first (`w = w_fp8 * weight_scale`), as Lightricks' own loader does
  (`from_single_file` would drop them without a word and load weights that are off by them). NVFP4
  weights (`weight_scale` block scales with a `weight_scale_2`, `scenekit.runtime.nvfp4`) are
  dequantized. Tensors go straight to the GPU one by one: a 19B checkpoint never sits in host memory.
* Text connectors: they are trained with the transformer, so a checkpoint's own connectors go with it
  (not those of the diffusers folder beside it); their keys are renamed as diffusers' conversion script does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from scenekit.runtime.nvfp4 import dequantize as dequantize_nvfp4
from scenekit.runtime.state_dicts import load_exactly

TRANSFORMER_PREFIX = "model.diffusion_model."
PROJECTION_PREFIX = "text_embedding_projection."
_CONNECTORS = {"video_embeddings_connector.": "video_connector.", "audio_embeddings_connector.": "audio_connector."}
_CONNECTOR_RENAMES = (
    ("transformer_1d_blocks", "transformer_blocks"),
    ("q_norm", "norm_q"),
    ("k_norm", "norm_k"),
    ("aggregate_embed", "text_proj_in"),
)
# Scale names: Lightricks' ltx-core (`weight_scale`, `input_scale`) and ComfyUI (`scale_weight`, `scale_input`).
_WEIGHT_SCALES = (".weight_scale", ".scale_weight")
_INPUT_SCALES = (".input_scale", ".scale_input")
_NVFP4_TENSOR_SCALE = ".weight_scale_2"


def _read(path: Path, keep: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys() if keep(key)}  # noqa: SIM118 - safe_open has keys() but no __iter__


def _is_connector(key: str) -> bool:
    return key.startswith(PROJECTION_PREFIX) or any(key.startswith(TRANSFORMER_PREFIX + c) for c in _CONNECTORS)


def _is_transformer(key: str) -> bool:
    return key.startswith(TRANSFORMER_PREFIX) and not _is_connector(key)


def transformer_state(path: Path, dtype: torch.dtype, device: str | torch.device) -> dict[str, torch.Tensor]:
    """The transformer's tensors of a checkpoint file, read one at a time straight to `device`, in `dtype`,
    with fp8 weight scales folded in and NVFP4 weights dequantized (so host memory never holds the model).

    Raises ValueError when there is no transformer, or a scale without its weight.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        keys = [key for key in handle.keys() if _is_transformer(key) and not key.endswith(_INPUT_SCALES)]  # noqa: SIM118 - safe_open has keys() but no __iter__
        nvfp4 = {key[: -len(_NVFP4_TENSOR_SCALE)] for key in keys if key.endswith(_NVFP4_TENSOR_SCALE)}
        keys = [key for key in keys if not key.endswith(_NVFP4_TENSOR_SCALE)]
        scales = {}
        for key in keys:
            suffix = next((s for s in _WEIGHT_SCALES if key.endswith(s)), None)
            if suffix is not None:
                scales[key[: -len(suffix)] + ".weight"] = key
        missing = sorted(set(scales) - set(keys))
        if missing:
            raise ValueError(f"{path.name}: scale for `{missing[0]}` but no such weight")
        state = {}
        for key in keys:
            if key.endswith(_WEIGHT_SCALES):
                continue
            layer = key.removesuffix(".weight")
            if layer in nvfp4:
                tensor = dequantize_nvfp4(
                    handle.get_tensor(key),
                    handle.get_tensor(layer + ".weight_scale"),
                    handle.get_tensor(layer + _NVFP4_TENSOR_SCALE),
                )
            else:
                tensor = handle.get_tensor(key)
                if key in scales:  # activation scales are for scaled-fp8 matmuls; computing in `dtype` needs none
                    tensor = tensor.to(torch.float32) * handle.get_tensor(scales[key]).to(torch.float32)
            state[key] = tensor.to(dtype)
    if not state:
        raise ValueError(f"{path.name}: no transformer weights (keys under `{TRANSFORMER_PREFIX}`)")
    return state


def connectors_state(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text connectors' tensors of a checkpoint under diffusers' `LTX2TextConnectors` names (empty if none)."""
    state = {}
    for key, tensor in checkpoint.items():
        if not _is_connector(key):
            continue
        name = key[len(PROJECTION_PREFIX) :] if key.startswith(PROJECTION_PREFIX) else key[len(TRANSFORMER_PREFIX) :]
        for original, renamed in _CONNECTORS.items():
            if name.startswith(original):
                name = renamed + name[len(original) :]
        for original, renamed in _CONNECTOR_RENAMES:
            name = name.replace(original, renamed)
        state[name] = tensor
    return state


def has_connectors(path: Path) -> bool:
    """Whether a checkpoint file holds text-connector weights."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return any(_is_connector(key) for key in handle.keys())  # noqa: SIM118 - safe_open has keys() but no __iter__


# LTX-2.3's modules that diffusers' conversion (written for LTX-2.0) leaves under Lightricks' names.
_LTX23_RENAMES = (("prompt_adaln_single.", "prompt_adaln."), ("audio_prompt_adaln_single.", "audio_prompt_adaln."))


def transformer_keys_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's transformer tensors under diffusers' names: diffusers' own conversion, then LTX-2.3's
    prompt modulation (`prompt_adaln_single` -> `prompt_adaln`), which it does not know."""
    from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers

    converted = convert_ltx2_transformer_to_diffusers(state)
    for original, renamed in _LTX23_RENAMES:
        for key in [key for key in converted if key.startswith(original)]:
            converted[renamed + key[len(original) :]] = converted.pop(key)
    return converted


def load_transformer_file(
    path: Path, config_folder: Path, dtype: torch.dtype, device: str | torch.device, **options: Any
) -> Any:
    """An `LTX2VideoTransformer3DModel` on `device` from a checkpoint file, configured by
    `config_folder/transformer` (with `options` overriding the config).

    The keys go through diffusers' own conversion; every weight must fit (a ValueError names those that don't).
    """
    from accelerate import init_empty_weights
    from diffusers import LTX2VideoTransformer3DModel

    config = dict(LTX2VideoTransformer3DModel.load_config(config_folder, subfolder="transformer"), **options)
    with init_empty_weights():  # parameters on the meta device until the file's tensors are assigned
        model = LTX2VideoTransformer3DModel.from_config(config)
    state = transformer_keys_to_diffusers(transformer_state(path, dtype, device))
    return load_exactly(model, state, f"{path.name} does not fit diffusers' LTX2VideoTransformer3DModel").to(device)


def load_connectors_file(path: Path, config_folder: Path, dtype: torch.dtype) -> Any:
    """`LTX2TextConnectors` with the checkpoint file's weights, configured by `config_folder/connectors`.

    Raises ValueError naming the tensors that do not fit, rather than load connectors partly.
    """
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    model = LTX2TextConnectors.from_config(LTX2TextConnectors.load_config(config_folder, subfolder="connectors"))
    state = {key: tensor.to(dtype) for key, tensor in connectors_state(_read(path, _is_connector)).items()}
    return load_exactly(model, state, f"the text connectors in {path.name} do not fit diffusers' LTX2TextConnectors")
