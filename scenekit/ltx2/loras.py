"""A clip's LoRAs, found and checked before any work: files, content hashes, weights and stages.

An entry of a spec's `loras:` is a file of the spec (hashed by the timeline), a file in a Hugging Face repo
(looked up in the local cache, never downloaded here) or a preset: first the user config's `loras:`, then
the profile's. Every LoRA must fit the profile's transformer: its layers are read from the file's header
only (names and shapes, in Lightricks' published format or diffusers'), and each must name a linear layer
of that transformer with the same shape, so a LoRA for another model family is an error at its entry
rather than a failure half way through a render.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenekit.errors import SpecError, SpecIssue
from scenekit.ltx2.settings import Ltx2Settings
from scenekit.spec.assets import Asset, cached_sha256
from scenekit.spec.models import LORA_WEIGHT_RANGE
from scenekit.timeline import ResolvedClip, ResolvedLora
from scenekit.userconfig import user_settings

_PARTS = ("transformer", "connectors")


@dataclass(frozen=True)
class ClipLora:
    """A LoRA of a clip, found: its file (with content hash), weight and the stages it applies to."""

    asset: Asset
    weight: float
    stages: tuple[int, ...]
    source: str
    """The spec field it comes from (for `plan`'s reasons)."""

    @property
    def adapter(self) -> str:
        """The adapter name it loads under: one per file content, whatever the file is called."""
        return adapter_name(self.asset.sha256)


def reference_downscale_factor(path: Path) -> int:
    """How much smaller than the clip an IC-LoRA wants its control video (the file's
    `reference_downscale_factor` metadata, as Lightricks publish it; 1 without)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        value = (handle.metadata() or {}).get("reference_downscale_factor", "1")
    try:
        factor = int(float(value))
    except ValueError:
        factor = 0
    if factor < 1:
        raise ValueError(f"{path.name}: reference_downscale_factor {value!r} is not a whole number >= 1")
    return factor


def adapter_name(sha256: str) -> str:
    """The PEFT adapter name of a LoRA file with this content hash."""
    return f"lora_{sha256[:16]}"


def clip_loras(clip: ResolvedClip, settings: Ltx2Settings, folder: Path) -> list[ClipLora]:
    """The clip's LoRAs (its IC-LoRA last) with their files found and checked against the transformer
    configured in `folder`; raises SpecError with every problem, each located at its entry."""
    found: list[ClipLora] = []
    issues: list[SpecIssue] = []
    for entry in clip.loras + ([clip.control.lora] if clip.control is not None else []):
        try:
            lora = _found(entry, settings, len(settings.stages))
        except _Problem as problem:
            issues.append(entry.issue(*problem.args))
            continue
        misfit = _misfit(lora.asset.path, folder)
        if misfit:
            issues.append(
                entry.issue(
                    f"LoRA {lora.asset.written} does not fit model `{clip.profile.name}`: {misfit}",
                    "is it a LoRA for another model? LTX-2 LoRAs name layers such as "
                    "`diffusion_model.transformer_blocks.0.attn1.to_q` (Lightricks) or "
                    "`transformer.transformer_blocks.0.attn1.to_q` (diffusers)",
                )
            )
        found.append(lora)
    if issues:
        raise SpecError(issues)
    return found


class _Problem(Exception):
    """What is wrong with one LoRA entry: (message, hint)."""


def _found(lora: ResolvedLora, settings: Ltx2Settings, stage_count: int) -> ClipLora:
    weight, stages, asset = lora.weight, lora.stages, lora.asset
    if lora.preset is not None:
        asset, preset_weight, preset_stages = _preset(lora.preset, settings)
        weight = preset_weight if weight is None else weight
        stages = stages or preset_stages
    elif lora.repo is not None:
        assert lora.file is not None and lora.revision is not None  # a repo entry names its file
        asset = _from_hub(lora.repo, lora.revision, lora.file)
    assert asset is not None  # a file entry of the spec comes hashed from the timeline
    weight = 1.0 if weight is None else weight
    low, high = LORA_WEIGHT_RANGE
    if not low <= weight <= high:
        raise _Problem(f"LoRA weight {weight:g} is outside {low:g}..{high:g}", "use a weight in that range")
    stages = stages or (tuple(settings.lora_stages) if settings.lora_stages else None)
    every = tuple(range(1, stage_count + 1))
    wrong = [stage for stage in stages or () if stage not in every]
    if wrong:
        raise _Problem(
            f"stage {wrong[0]} does not exist: this model samples in {stage_count} stage(s)",
            f"use stages from {', '.join(map(str, every))}",
        )
    return ClipLora(asset, weight, stages or every, lora.source)


def _preset(name: str, settings: Ltx2Settings) -> tuple[Asset, float, tuple[int, ...] | None]:
    """A preset's file, weight and stages: the user config's, else the profile's."""
    user = user_settings()
    if name in user.loras:
        preset = user.loras[name]
        stages = tuple(preset.stages) if preset.stages else None
        if preset.repo is not None:
            repo, _, revision = preset.repo.partition("@")
            return _from_hub(repo, revision or "main", preset.file), preset.weight, stages
        path = (user.models.base / Path(preset.file).expanduser()).resolve()
        if not path.is_file():
            raise _Problem(
                f"preset `{name}` names {path}, which is not a file", f"fix `loras.{name}` in the user config"
            )
        return Asset(preset.file, path, cached_sha256(path)), preset.weight, stages
    if name in settings.loras:
        ref = settings.loras[name]
        stages = tuple(ref.stages) if ref.stages else None
        return _from_hub(ref.repo, ref.revision, ref.file), ref.weight, stages
    known = sorted({*user.loras, *settings.loras})
    raise _Problem(
        f"unknown LoRA preset `{name}`",
        (f"presets: {', '.join(known)}" if known else "no presets are defined")
        + "; define one under `loras:` in the user config",
    )


def _from_hub(repo: str, revision: str, file: str) -> Asset:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, file, revision=revision)
    if not isinstance(cached, str):
        raise _Problem(
            f"LoRA {repo}@{revision}:{file} is not in the Hugging Face cache",
            f"download it with `hf download {repo} {file} --revision {revision}`",
        )
    path = Path(cached)
    return Asset(f"{repo}@{revision}:{file}", path, cached_sha256(path))


def lora_layers(path: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """A LoRA file's layers by model (`transformer`, `connectors`) under diffusers' module names, with the
    shapes of their `lora_A`/`lora_B` weights, from the file's header (no tensor is read)."""
    return _lora_layers(path, *_version(path))


def _version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _lora_layers(path: Path, size: int, mtime_ns: int) -> dict[str, dict[str, tuple[int, ...]]]:
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_ltx2_lora_to_diffusers
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        shapes: dict[str, Any] = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 - safe_open has keys() but no __iter__
    if any(key.startswith("diffusion_model.") for key in shapes):  # Lightricks' format: renamed as diffusers does
        converted = _convert_non_diffusers_ltx2_lora_to_diffusers(shapes)
        if any(key.startswith("text_embedding_projection.") for key in shapes):
            converted.update(_convert_non_diffusers_ltx2_lora_to_diffusers(shapes, "text_embedding_projection"))
        shapes = converted
    layers: dict[str, dict[str, tuple[int, ...]]] = {part: {} for part in _PARTS}
    for key, shape in shapes.items():
        part, _, name = key.partition(".")
        if part in layers and name.endswith((".lora_A.weight", ".lora_B.weight")):
            layers[part][name] = shape
    return layers


def _misfit(path: Path, folder: Path) -> str | None:
    """Why the LoRA's layers do not fit the models configured in `folder`, or None."""
    layers = lora_layers(path)
    if not layers["transformer"]:
        return "it has no transformer layers"
    wrong: list[str] = []
    for part, names in layers.items():
        linear = _linear_shapes(folder, part) if names else {}
        for name, shape in names.items():
            module, kind = name.rsplit(".", 2)[0], name.rsplit(".", 2)[1]
            if module not in linear:
                wrong.append(f"{part}.{module} is not a linear layer there")
            elif (kind == "lora_A" and shape[-1] != linear[module][0]) or (
                kind == "lora_B" and shape[0] != linear[module][1]
            ):
                wrong.append(f"{part}.{module} has another shape")
    if not wrong:
        return None
    total = sum(len(names) for names in layers.values())
    return f"{len(wrong)} of its {total} weights do not match (first: {sorted(wrong)[0]})"


@functools.lru_cache(maxsize=16)
def _linear_shapes(folder: Path, part: str) -> dict[str, tuple[int, int]]:
    """(in, out) features of every linear layer of the transformer or connectors configured in `folder`,
    built without weights."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    cls: Any = LTX2VideoTransformer3DModel if part == "transformer" else LTX2TextConnectors
    with init_empty_weights():
        model = cls.from_config(cls.load_config(folder, subfolder=part))
    return {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
