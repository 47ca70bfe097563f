"""Loaded LTX-Video models, kept across nodes and renders in the runtime's `MODELS` (shared with every family).

The tokenizer, T5 text encoder and scheduler come from the hub repo's diffusers folders; the transformer
and the VAE from the profile's single-file checkpoint (a local folder without it may hold them in diffusers'
`transformer/` and `vae/` instead); the upscaler from its file (or `latent_upsampler/`). The text encoder
is loaded for prompt nodes only and freed when sampling starts; the transformer is a large model the
runtime frees when another needs the room, with the VAE that came in its file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scenekit.hardware import compute_device
from scenekit.ltxv.checkpoint import load_transformer_file, load_upsampler_file, load_vae_file
from scenekit.runtime import memory
from scenekit.runtime.memory import choose_placement, offload_blocks
from scenekit.runtime.pool import MODELS
from scenekit.runtime.speed import FP8_ROWWISE, Numerics, apply_numerics, held_storage


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _single_file(folder: Path, file: str | None) -> Path | None:
    return folder / file if file and (folder / file).is_file() else None


def _bytes(path: Path | None, folder: Path, compute: torch.dtype) -> int:
    """GPU bytes the transformer takes in the compute dtype (counted from the file's tensor shapes)."""
    from safetensors import safe_open

    files = sorted((folder / "transformer").glob("*.safetensors")) if path is None else [path]
    count = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has keys() but no __iter__
                if path is None or key.startswith("model.diffusion_model."):
                    count += _numel(handle, key)
    return count * torch.empty((), dtype=compute).element_size()


def _numel(handle: Any, key: str) -> int:
    total = 1
    for size in handle.get_slice(key).get_shape():
        total *= size
    return total


def _tokenizer(folder: Path) -> Any:
    """The T5 tokenizer of `folder/tokenizer`; a hub folder holding only `spiece.model` needs sentencepiece."""
    import importlib.util

    from transformers import T5Tokenizer

    try:
        return T5Tokenizer.from_pretrained(folder, subfolder="tokenizer")
    except (ImportError, ValueError) as exc:
        if importlib.util.find_spec("sentencepiece") is None:
            raise RuntimeError(
                f"reading the T5 tokenizer in {folder / 'tokenizer'} (spiece.model) needs sentencepiece and "
                "protobuf: pip install 'scenekit[ltxv]'"
            ) from exc
        raise


def scheduler(folder: Path) -> Any:
    """The repo's scheduler with shifting off: the profiles' timesteps are used as Lightricks' configs list them."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = FlowMatchEulerDiscreteScheduler.load_config(folder, subfolder="scheduler")
    return FlowMatchEulerDiscreteScheduler.from_config(
        config, use_dynamic_shifting=False, shift=1.0, shift_terminal=None
    )


class ModelPool:
    """LTX-Video components by where they come from and how they are stored."""

    @property
    def device(self) -> str:
        return compute_device()

    def _text(self, folder: Path, compute: str) -> tuple[Any, Any]:
        from transformers import T5EncoderModel

        def encoder() -> Any:
            model = T5EncoderModel.from_pretrained(folder, subfolder="text_encoder", dtype=_dtype(compute)).eval()
            size = sum(p.numel() * p.element_size() for p in model.parameters())
            if choose_placement("text_encoder", size, memory.free_gpu_bytes(self.device)) == "offload":
                offload_blocks(model, self.device)
                return model
            return model.to(self.device)

        tokenizer = MODELS.get(("ltxv", folder, "tokenizer"), lambda: _tokenizer(folder))
        model = MODELS.get(("ltxv", folder, "text_encoder", compute, self.device), encoder, role="text_encoder")
        return tokenizer, model

    def text_pipeline(self, folder: Path, compute: str) -> Any:
        """An LTXConditionPipeline holding only the tokenizer and the T5 text encoder (for prompt nodes)."""
        from diffusers import LTXConditionPipeline

        tokenizer, encoder = self._text(folder, compute)
        return LTXConditionPipeline(
            scheduler=None, vae=None, text_encoder=encoder, tokenizer=tokenizer, transformer=None
        )

    def vae(self, folder: Path, file: str | None, compute: str) -> Any:
        """The VAE of the checkpoint file (or `vae/` of a local diffusers folder)."""
        from diffusers import AutoencoderKLLTXVideo

        single = _single_file(folder, file)

        def load() -> Any:
            if single is not None:
                return load_vae_file(single, _dtype(compute), self.device)
            model = AutoencoderKLLTXVideo.from_pretrained(folder, subfolder="vae", dtype=_dtype(compute))
            return model.to(self.device).eval()

        return MODELS.get(("ltxv", folder, single, "vae", compute, self.device), load, group=single)

    def transformer(self, folder: Path, file: str | None, precision: dict[str, str], numerics: Numerics) -> Any:
        """The transformer of the checkpoint file (or `transformer/`), stored as the profile says (or quantized
        for fp8 compute) and with its blocks compiled when `numerics` says so."""
        from diffusers import LTXVideoTransformer3DModel

        compute, storage = precision["compute"], held_storage(precision["storage"])
        single = _single_file(folder, file)

        def load() -> Any:
            needed = _bytes(single, folder, _dtype(compute))
            MODELS.make_room(needed, self.device, group=single)
            placement = choose_placement("transformer", needed, memory.free_gpu_bytes(self.device))
            device = self.device if placement == "resident" else "cpu"
            if single is not None:
                model = load_transformer_file(single, _dtype(compute), device)
            else:
                model = LTXVideoTransformer3DModel.from_pretrained(
                    folder, subfolder="transformer", dtype=_dtype(compute)
                )
            model = model.to(device).eval()
            if storage != compute and numerics.matmul != FP8_ROWWISE:
                model.enable_layerwise_casting(storage_dtype=_dtype(storage), compute_dtype=_dtype(compute))
            apply_numerics(model, numerics, offloaded=placement == "offload")
            if placement == "offload":
                offload_blocks(model, self.device)
            return model

        key = ("ltxv", folder, "transformer", single, compute, storage, numerics, self.device)
        return MODELS.get(key, load, role="transformer", large=True, group=single)

    def pipeline(self, folder: Path, file: str | None, precision: dict[str, str], numerics: Numerics) -> Any:
        """An LTXConditionPipeline for sampling (no text encoder)."""
        from diffusers import LTXConditionPipeline

        MODELS.release("text_encoder")
        compute = precision["compute"]
        pipe = LTXConditionPipeline(
            scheduler=MODELS.get(("ltxv", folder, "scheduler"), lambda: scheduler(folder)),
            vae=self.vae(folder, file, compute),
            text_encoder=None,
            tokenizer=None,
            transformer=self.transformer(folder, file, precision, numerics),
        )
        pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class
        return pipe

    def decoder(self, folder: Path, file: str | None, compute: str) -> Any:
        """An LTXConditionPipeline holding only the VAE (for decode nodes)."""
        from diffusers import LTXConditionPipeline

        vae = self.vae(folder, file, compute)
        return LTXConditionPipeline(scheduler=None, vae=vae, text_encoder=None, tokenizer=None, transformer=None)

    def upsampler(self, folder: Path, checkpoint: str | None, file: str | None, compute: str) -> Any:
        """An LTXLatentUpsamplePipeline: the upscaler (its file, or `latent_upsampler/`) on the checkpoint's VAE."""
        from diffusers import LTXLatentUpsamplePipeline
        from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

        single = _single_file(folder, file)

        def load() -> Any:
            if single is not None:
                return load_upsampler_file(single, _dtype(compute), self.device)
            model = LTXLatentUpsamplerModel.from_pretrained(folder, subfolder="latent_upsampler", dtype=_dtype(compute))
            return model.to(self.device).eval()

        model = MODELS.get(("ltxv", folder, single, "upsampler", compute, self.device), load)
        pipe = LTXLatentUpsamplePipeline(vae=self.vae(folder, checkpoint, compute), latent_upsampler=model)
        pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class
        return pipe


POOL = ModelPool()
