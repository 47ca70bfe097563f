"""Loaded LTX-2 models, kept across nodes and renders in one process.

Components are cached one by one, keyed by where they come from, so pipelines of several profiles
that share a folder (one hub snapshot) share their VAEs and vocoder; a profile's transformer and
text connectors come from its single-file checkpoint when the folder has it. The text encoder is
loaded for prompt nodes only and freed when sampling starts. The models live in the runtime's
`MODELS` with every other family's: a transformer is a large model there, which the runtime frees
(with its checkpoint's connectors) when another needs the room. Where the memory policy says so
(`scenekit.runtime.memory`), the transformer and the text encoder are streamed to the GPU block by
block instead of staying resident.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from scenekit.hardware import compute_device
from scenekit.ltx2.checkpoint import has_connectors, load_connectors_file, load_transformer_file
from scenekit.ltx2.upsampler import load_upsampler_file
from scenekit.runtime import memory
from scenekit.runtime.memory import choose_placement, offload_blocks
from scenekit.runtime.pool import MODELS
from scenekit.runtime.speed import FP8_ROWWISE, Numerics, apply_numerics, held_storage

_PIPELINE_PARTS = ("scheduler", "vae", "audio_vae", "connectors", "vocoder")
_TEXT_PARTS = ("text_encoder", "tokenizer")
_OFFLOADABLE = ("text_encoder",)  # besides the transformer: the models big enough to stream by blocks
MAX_ADAPTERS = 8  # spec LoRAs kept loaded per model; the least recently used is unloaded beyond that


def adapter_name_of_file(file: str) -> str:
    """The adapter name of a profile's LoRA (named after its file)."""
    return Path(file).stem.replace(".", "_").replace("-", "_")


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _import_library(library: str) -> Any:
    """The module a model_index.json entry names: a package (`transformers`) or a diffusers pipeline (`ltx2`)."""
    try:
        return importlib.import_module(library)
    except ModuleNotFoundError:
        return importlib.import_module(f"diffusers.pipelines.{library}")


def _bytes_to_load(folder: Path, compute: torch.dtype) -> int:
    """GPU bytes a transformer takes while it loads: all its weights in the compute dtype (counted on an
    empty model built from the folder's config)."""
    from accelerate import init_empty_weights
    from diffusers import LTX2VideoTransformer3DModel

    with init_empty_weights():
        model = LTX2VideoTransformer3DModel.from_config(
            LTX2VideoTransformer3DModel.load_config(folder, subfolder="transformer")
        )
    return sum(p.numel() for p in model.parameters()) * torch.empty((), dtype=compute).element_size()


def _single_file(folder: Path, file: str | None) -> Path | None:
    """The profile's single-file checkpoint in the folder, if the profile names one and it is there."""
    return folder / file if file and (folder / file).is_file() else None


def _to_dtype(module: Any, adapter: str, dtype: torch.dtype) -> None:
    """An adapter's weights in the compute dtype (PEFT gives them the dtype its layers' weights are stored in,
    which is float8 for fp8 storage)."""
    for name, parameter in module.named_parameters():
        if f".{adapter}." in name:
            parameter.data = parameter.data.to(dtype)


def _lora_file(folder: Path, lora: str) -> Path:
    path = folder / lora
    if not path.is_file():
        raise RuntimeError(f"LoRA {lora} is not in {folder}; fetch the profile's weights again")
    return path


class _LoraLayers:
    """A LoRA file's layers by module, read (and converted) at most once.

    The file may be in Lightricks' own format (`diffusion_model.*`, `text_embedding_projection.*`, as
    published) or in diffusers' (`transformer.*`, `connectors.*`); diffusers converts the first.
    """

    def __init__(self, path: Path):
        self.path = path
        self._state: dict[str, Any] | None = None

    def load_into(self, module: Any, prefix: str, name: str, adapter: str | None = None) -> bool:
        """Load the layers for `module` (`transformer` or `connectors`) as `adapter` (default: named after
        the file `name`), inactive until activated; False when the LoRA has none for it."""
        from diffusers import LTX2Pipeline

        if self._state is None:
            self._state = LTX2Pipeline.lora_state_dict(str(self.path))
        mine = {key: value for key, value in self._state.items() if key.startswith(f"{prefix}.")}
        if prefix == "transformer" and not mine:
            raise RuntimeError(f"LoRA {self.path} has no transformer layers (is it an LTX-2 LoRA?)")
        if mine:
            module.load_lora_adapter(mine, adapter_name=adapter or adapter_name_of_file(name), prefix=prefix)
            module.disable_lora()
        return bool(mine)


class ModelPool:
    """Components and pipelines by where they come from and how they are stored."""

    def __init__(self) -> None:
        self._lora_skipped: set[tuple] = set()  # (connectors key, LoRA) where the LoRA has no connector layers
        self._adapter_use: dict[tuple[int, str], int] = {}  # (id of a model, spec LoRA adapter) -> last use
        self._uses = 0
        self.adapter_loads = 0
        """Spec LoRA files loaded into a transformer so far (each at most once while it stays loaded)."""

    @property
    def device(self) -> str:
        return compute_device()

    def component(self, folder: Path, name: str, compute: str) -> Any:
        """One pipeline component (`vae`, `text_encoder`, ...) loaded from the folder in `compute` dtype."""
        from diffusers import LTX2Pipeline

        def load() -> Any:
            library, class_name = LTX2Pipeline.load_config(folder)[name]
            cls = getattr(_import_library(library), class_name)
            if not issubclass(cls, torch.nn.Module):
                return cls.from_pretrained(folder, subfolder=name)
            model = cls.from_pretrained(folder, subfolder=name, dtype=_dtype(compute)).eval()
            if name in _OFFLOADABLE:
                size = sum(p.numel() * p.element_size() for p in model.parameters())
                if choose_placement(name, size, memory.free_gpu_bytes(self.device)) == "offload":
                    offload_blocks(model, self.device)
                    return model
            return model.to(self.device)

        role = "text_encoder" if name in _TEXT_PARTS else "component"
        return MODELS.get((folder, name, compute, self.device), load, role=role)

    def transformer(
        self,
        folder: Path,
        file: str | None,
        precision: dict[str, str],
        numerics: Numerics,
        lora: str | None = None,
        lora_layers: _LoraLayers | None = None,
    ) -> Any:
        """The transformer (from `file` in the folder if present, else `transformer/`), with the profile's
        LoRA loaded (inactive) when it has one, its weights stored as the profile says (or quantized for
        fp8 compute) and its blocks compiled when `numerics` says so."""
        from diffusers import LTX2VideoTransformer3DModel
        from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

        compute, storage = precision["compute"], held_storage(precision["storage"])
        single = _single_file(folder, file)

        def load() -> Any:
            needed = _bytes_to_load(folder, _dtype(compute))
            MODELS.make_room(needed, self.device, group=single)
            placement = choose_placement("transformer", needed, memory.free_gpu_bytes(self.device))
            device = self.device if placement == "resident" else "cpu"
            if single is not None:
                model = load_transformer_file(single, folder, _dtype(compute), device, perturbed_attn=True)
            else:
                model = LTX2VideoTransformer3DModel.from_pretrained(
                    folder, subfolder="transformer", perturbed_attn=True, dtype=_dtype(compute)
                )
            model = model.to(device).eval()
            if lora is not None:
                (lora_layers or _LoraLayers(_lora_file(folder, lora))).load_into(model, "transformer", lora)
            if storage != compute and numerics.matmul != FP8_ROWWISE:  # LoRA layers stay in the compute dtype
                model.enable_layerwise_casting(
                    storage_dtype=_dtype(storage),
                    compute_dtype=_dtype(compute),
                    skip_modules_pattern=(*DEFAULT_SKIP_MODULES_PATTERN, "lora_"),
                )
            apply_numerics(model, numerics, offloaded=placement == "offload")
            if placement == "offload":
                offload_blocks(model, self.device)
            return model

        key = (folder, "transformer", single, lora, compute, storage, numerics, self.device)
        return MODELS.get(key, load, role="transformer", large=True, group=single)

    @staticmethod
    def use_lora(pipe: Any, lora: dict[str, Any] | None) -> None:
        """Activate the stage's LoRA at its strength in every module it has layers for, or no LoRA."""
        ModelPool.activate(pipe, [] if lora is None else [(adapter_name_of_file(lora["file"]), lora["strength"])])

    @staticmethod
    def activate(pipe: Any, adapters: list[tuple[str, float]]) -> None:
        """Make exactly `adapters` (name, weight) active in every module that has them loaded; none in the others."""
        for module in (pipe.transformer, pipe.connectors):
            loaded = getattr(module, "peft_config", None) or {}
            mine = [(name, weight) for name, weight in adapters if name in loaded]
            if not mine:
                if loaded:
                    module.disable_lora()
                continue
            module.enable_lora()
            module.set_adapters([name for name, _ in mine], weights=[weight for _, weight in mine])

    def load_adapter(
        self, pipe: Any, path: Path, adapter: str, compute: str, needed: frozenset[str] = frozenset()
    ) -> None:
        """Load a spec's LoRA file into the pipeline's transformer (and connectors, when it has layers for
        them) as `adapter`, unless it is loaded: the transformer stays as it is, the adapters beside its
        layers. Beyond `MAX_ADAPTERS` the least recently used spec LoRA is unloaded first, never one of
        `needed` (the other adapters of the stage being loaded: a stage of more LoRAs keeps them all). A
        transformer streamed by the `offload` memory policy keeps its resident and streamed blocks as they were."""
        layers = _LoraLayers(path)
        for prefix in ("transformer", "connectors"):
            module = getattr(pipe, prefix)
            self._uses += 1
            self._adapter_use[(id(module), adapter)] = self._uses
            if adapter in (getattr(module, "peft_config", None) or {}):
                continue
            self._make_adapter_room(module, needed | {adapter})
            if layers.load_into(module, prefix, path.name, adapter):
                _to_dtype(module, adapter, _dtype(compute))
                self.adapter_loads += prefix == "transformer"
            memory.restream(module)  # a streamed transformer streams the adapter's layers with its blocks

    def _make_adapter_room(self, module: Any, needed: frozenset[str]) -> None:
        loaded = getattr(module, "peft_config", None) or {}
        tracked = sorted((use, name) for (owner, name), use in self._adapter_use.items() if owner == id(module))
        tracked = [(use, name) for use, name in tracked if name in loaded]
        spare = [(use, name) for use, name in tracked if name not in needed]
        # one more is about to load: the least recently used spare ones go, down to MAX_ADAPTERS if they can
        for _, name in spare[: max(0, len(tracked) + 1 - MAX_ADAPTERS)]:
            module.delete_adapters([name])
            del self._adapter_use[(id(module), name)]

    def pipeline(
        self, folder: Path, file: str | None, precision: dict[str, str], numerics: Numerics, lora: str | None = None
    ) -> Any:
        """An LTX2Pipeline for sampling (no text encoder)."""
        from diffusers import LTX2Pipeline

        self.release_text_encoder()
        compute = precision["compute"]
        single = _single_file(folder, file)
        # a checkpoint's connectors go with its transformer
        own_connectors = single is not None and MODELS.get((single, "has_connectors"), lambda: has_connectors(single))
        parts = {
            name: self.component(folder, name, compute)
            for name in _PIPELINE_PARTS
            if not (name == "connectors" and own_connectors)
        }
        layers = _LoraLayers(_lora_file(folder, lora)) if lora is not None else None
        transformer = self.transformer(folder, file, precision, numerics, lora, layers)
        connectors_key = (folder, "connectors", compute, self.device)
        if single is not None and own_connectors:
            connectors_key = (single, "connectors", compute, self.device)
            parts["connectors"] = MODELS.get(
                connectors_key,
                lambda: load_connectors_file(single, folder, _dtype(compute)).to(self.device),
                group=single,
            )
        loaded = getattr(parts["connectors"], "peft_config", None) or {}
        if (
            lora is not None
            and layers is not None
            and adapter_name_of_file(lora) not in loaded
            and (connectors_key, lora) not in self._lora_skipped
        ):
            has_layers = layers.load_into(parts["connectors"], "connectors", lora)
            if not has_layers:
                self._lora_skipped.add((connectors_key, lora))
        pipe = LTX2Pipeline(transformer=transformer, text_encoder=None, tokenizer=None, **parts)
        pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class
        return pipe

    def decoder(self, folder: Path, compute: str) -> Any:
        """An LTX2Pipeline holding only what decoding needs: the VAEs and the vocoder (no transformer)."""
        from diffusers import LTX2Pipeline

        parts = {name: self.component(folder, name, compute) for name in ("vae", "audio_vae", "vocoder")}
        return LTX2Pipeline(
            scheduler=None, text_encoder=None, tokenizer=None, connectors=None, transformer=None, **parts
        )

    def text_pipeline(self, folder: Path, compute: str) -> Any:
        """An LTX2Pipeline holding only the tokenizer and text encoder (for prompt nodes)."""
        from diffusers import LTX2Pipeline

        parts = {name: self.component(folder, name, compute) for name in _TEXT_PARTS}
        return LTX2Pipeline(
            scheduler=None, vae=None, audio_vae=None, connectors=None, transformer=None, vocoder=None, **parts
        )

    def upsampler(self, folder: Path, name: str, vae: Any, compute: str) -> Any:
        """An LTX2LatentUpsamplePipeline on the given VAE with the upsampler `folder/name`: a diffusers
        subfolder, or a single file built from its metadata (`scenekit.ltx2.upsampler`)."""
        from diffusers import LTX2LatentUpsamplePipeline
        from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

        def load() -> Any:
            path = folder / name
            model = (
                load_upsampler_file(path)
                if path.is_file()
                else LTX2LatentUpsamplerModel.from_pretrained(folder, subfolder=name)
            )
            return model.to(device=self.device, dtype=_dtype(compute)).eval()

        model = MODELS.get((folder, name, compute, self.device), load)
        pipe = LTX2LatentUpsamplePipeline(vae=vae, latent_upsampler=model)
        pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class
        return pipe

    def release_text_encoder(self) -> None:
        """Free every loaded text encoder (they are only needed for prompt nodes)."""
        MODELS.release("text_encoder")

    def clear(self) -> None:
        """Free every model this process loaded (of every family)."""
        MODELS.clear()
        self._lora_skipped.clear()
        self._adapter_use.clear()


POOL = ModelPool()
