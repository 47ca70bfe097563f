"""The `ltx2` backend: an LTX-2 clip as nodes at the natural cache boundaries.

    prompt ──▶ stage1 ──▶ upsample ──▶ stage2 ──▶ decode (frames.mkv + audio.wav)

Prompt embeddings depend only on the text encoder, so clips on different LTX-2 variants share
them; editing only stage-2 settings re-runs stage 2 and decode. A continued clip conditions its
stages on the tail of the clip it continues; `drift_control` pulls its stage-1 latents towards the
statistics of the chain's first clip (AdaIN).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from scenekit.backends import ClipNodes, FramesOf
from scenekit.backends.machine import decodes_tiled, numerics_here
from scenekit.backends.prompts import prompt_node
from scenekit.conditioning import condition_params, tail_range
from scenekit.errors import SpecError, SpecIssue
from scenekit.graph.nodes import Node
from scenekit.ltx2.loras import ClipLora, clip_loras, reference_downscale_factor
from scenekit.ltx2.parts import Part, fetch_hint, locate
from scenekit.ltx2.settings import Ltx2Settings, Stage, ltx2_settings
from scenekit.ltx2.upsampler import file_config, spatial_factor
from scenekit.runtime.speed import Numerics, held_storage
from scenekit.timeline import ResolvedClip, Timeline
from scenekit.units import format_rate
from scenekit.weights import MissingWeights, WeightsSource, resolve_weights

ENCODE_PROMPT = "ltx2.encode_prompt"
SAMPLE = "ltx2.sample"
UPSAMPLE = "ltx2.upsample"
DECODE = "ltx2.decode"
_LATENT_CELL = 32  # pixels per latent cell, each side (the VAE's spatial compression)


@dataclass(frozen=True)
class _Ready:
    """What a clip's profile needs on this machine, found."""

    settings: Ltx2Settings
    weights: WeightsSource
    numerics: Numerics
    transformer: Part | None
    """The single-file checkpoint; None: the folder's `transformer/` and `connectors/`."""
    lora: Part | None
    """The distilled LoRA, when a stage refines with it."""
    upsampler: Part

    def identity(self, *parts: str | Part) -> str:
        """What these parts are, for keys: folder parts (names) as the weights' identity, others by their own."""
        inside = [p if isinstance(p, str) else p.path.name for p in parts if isinstance(p, str) or self.inside(p)]
        outside = [p.identity for p in parts if isinstance(p, Part) and not self.inside(p)]
        return "+".join([self.weights.identity(*inside), *outside])

    def inside(self, part: Part) -> bool:
        return part.path.parent == self.weights.folder


def _ready(clip: ResolvedClip, timeline: Timeline) -> _Ready | str:
    """The clip's profile settings, weights, transformer numerics and parts, or why this machine cannot render
    the clip."""
    name, settings = clip.profile.name, ltx2_settings(clip.profile)
    precision = settings.precision
    numerics = numerics_here(clip, timeline, settings.speed, precision.compute, precision.storage)
    if isinstance(numerics, str):
        return numerics
    pipeline = settings.weights.pipeline
    try:
        weights = resolve_weights(name, pipeline, timeline.models, settings.hub_files())
    except MissingWeights as exc:
        return str(exc)
    transformer_ref, transformer = settings.weights.transformer, None
    if transformer_ref is not None and transformer_ref.file is not None:
        transformer = locate(weights, transformer_ref, pipeline)
        if transformer is None and weights.hub is not None:
            # in the hub snapshot `transformer/` is another variant: never fall back to it
            return (
                f"model `{name}` needs {transformer_ref.file}, which is not in the snapshot {weights.folder}; "
                + fetch_hint(name, transformer_ref, pipeline)
            )
    lora_ref, lora = settings.weights.distilled_lora, None
    if lora_ref is not None and lora_ref.file is not None and any(stage.lora for stage in settings.stages):
        lora = locate(weights, lora_ref, pipeline)
        if lora is None:
            return (
                f"model `{name}` refines with the LoRA {lora_ref.file}, which is not in {weights.folder}; "
                + fetch_hint(name, lora_ref, pipeline)
            )
    upsampler_ref = settings.weights.upsampler_ref
    upsampler = locate(weights, upsampler_ref, pipeline)
    if upsampler is None:
        what = upsampler_ref.file or f"{upsampler_ref.subfolder}/"
        return f"model `{name}` upsamples with {what}, which is not in {weights.folder}; " + fetch_hint(
            name, upsampler_ref, pipeline
        )
    problem = _upsampler_problem(name, settings, upsampler)
    if problem is not None:
        return problem
    return _Ready(settings, weights, numerics, transformer, lora, upsampler)


def _upsampler_problem(name: str, settings: Ltx2Settings, upsampler: Part) -> str | None:
    """Why the upsampler cannot upsample as the profile's stages need (their scales' ratio), if it cannot."""
    try:
        config = (
            file_config(upsampler.path)
            if upsampler.path.is_file()
            else json.loads((upsampler.path / "config.json").read_text(encoding="utf-8"))
        )
    except (OSError, ValueError) as exc:
        return f"model `{name}` cannot read its upsampler {upsampler.path}: {exc}"
    found = spatial_factor(config)
    wrong = sorted(float(f) for f in settings.upsample_factors() if f != Fraction(str(found)))
    if wrong:
        return (
            f"model `{name}` upsamples x{wrong[0]:g} between its stages, but {upsampler.path.name} upsamples "
            f"x{found:g}; name the matching upscaler in the profile's `ltx2.weights.upsampler`"
        )
    return None


def _stage_size(clip: ResolvedClip, stage: Stage) -> tuple[int, int]:
    """A stage's exact size: the clip's times the stage's scale, in whole latent cells (32 pixels)."""
    width, height = clip.width * stage.ratio, clip.height * stage.ratio
    if width.denominator != 1 or height.denominator != 1 or width % _LATENT_CELL or height % _LATENT_CELL:
        raise SpecError(
            [
                SpecIssue(
                    f"model `{clip.profile.name}` samples a stage at {stage.scale} of the size, and "
                    f"{clip.width}x{clip.height} times {stage.scale} is not in whole {_LATENT_CELL}-pixel cells",
                    clip.at,
                    clip.sources.get("size"),
                    f"use a size whose sides times {stage.scale} are multiples of {_LATENT_CELL}",
                )
            ]
        )
    return int(width), int(height)


def _chain_root(clip: ResolvedClip, timeline: Timeline) -> ResolvedClip:
    while clip.continues is not None:
        clip = timeline.clip(clip.continues)
    return clip


class Ltx2Backend:
    """Expands a clip into prompt, sampling, upsampling and decode nodes."""

    def machine_problem(self, clip: ResolvedClip, timeline: Timeline) -> str | None:
        """The profile's hardware needs, then its weights and the clip's LoRAs."""
        found = _ready(clip, timeline)
        if isinstance(found, str):
            return found
        try:
            clip_loras(clip, found.settings, found.weights.folder)
        except SpecError as exc:
            return "; ".join(f"{issue.field}: {issue.message}" for issue in exc.issues)
        return None

    def expand(self, clip: ResolvedClip, timeline: Timeline, frames_of: FramesOf) -> ClipNodes:
        found = _ready(clip, timeline)
        if isinstance(found, str):
            raise SpecError([clip.model_issue(found)])
        settings, weights = found.settings, found.weights
        loras = clip_loras(clip, settings, weights.folder)
        control = _control(clip, loras[-1]) if clip.control is not None else None
        prompt = self._prompt_node(clip, settings, weights)
        nodes = [prompt]
        previous: Node | None = None
        for number, stage in enumerate(settings.stages, start=1):
            factor = settings.upsample_factor(number)
            if previous is not None and factor is not None:
                previous = self._upsample_node(clip, found, previous, factor)
                nodes.append(previous)
            applied = [lora for lora in loras if number in lora.stages]
            previous = self._stage_node(
                clip, timeline, found, stage, number, prompt, previous, frames_of, applied, control
            )
            nodes.append(previous)
        assert previous is not None, f"profile {clip.profile.name} has no sampling stage"
        tiled = decodes_tiled(timeline)
        decode = self._decode_node(clip, settings, weights, previous, tiled)
        nodes.append(decode)
        return ClipNodes(nodes, decode.id)

    def _prompt_node(self, clip: ResolvedClip, settings: Ltx2Settings, weights: WeightsSource) -> Node:
        guidance = self._guidance(clip, settings)  # as the guided stage will use it: CFG needs a negative prompt
        guided = any(stage.guided for stage in settings.stages) and max(guidance["cfg"], guidance["audio_cfg"]) > 1.0
        return prompt_node(
            clip,
            ENCODE_PROMPT,
            weights,
            negative_prompt=str(clip.knobs.get("negative_prompt", "")) if guided else None,
            max_sequence_length=settings.max_sequence_length,
            precision=settings.precision.compute,
            encoder="text encoder",
        )

    def _stage_node(
        self,
        clip: ResolvedClip,
        timeline: Timeline,
        found: _Ready,
        stage: Stage,
        number: int,
        prompt: Node,
        previous: Node | None,
        frames_of: FramesOf,
        loras: list[ClipLora],
        control: dict[str, Any] | None,
    ) -> Node:
        settings, weights, numerics = found.settings, found.weights, found.numerics
        conditions, cond_inputs, files = condition_params(clip, timeline, frames_of)
        inputs: dict[str, str] = {"prompt": prompt.id, **cond_inputs}
        if previous is not None:
            inputs["latents"] = previous.id
        steps = clip.knobs.get("steps", stage.steps) if stage.guided else stage.steps
        width, height = _stage_size(clip, stage)
        params: dict[str, Any] = {
            "width": width,
            "height": height,
            "frames": clip.generated_frames,
            "fps": format_rate(clip.fps),
            "seed": clip.seed,
            "sigmas": stage.sigmas,
            "steps": steps if stage.sigmas is None else None,
            "noise_scale": stage.noise_scale,
            "guidance": self._guidance(clip, settings) if stage.guided else None,
            "lora": None,
            "crf": settings.conditioning_crf,
            "precision": settings.precision.model_dump(),
            "numerics": numerics.as_params(),
            "use_cross_timestep": settings.use_cross_timestep,
            "conditions": conditions,
            "context": None,
            "drift_control": None,
        }
        lora_sources = {"loras": f"clips[{clip.index}].loras"}
        if loras:  # absent without LoRAs: keys stay those of before LoRAs existed
            params["loras"] = [{"file": f"lora{index}", "weight": lora.weight} for index, lora in enumerate(loras)]
        for index, lora in enumerate(loras):  # the file's content is in the key through `files`
            files[f"lora{index}"] = lora.asset
            lora_sources[f"loras[{index}]"] = lora.source
            lora_sources[f"loras[{index}].weight"] = f"{lora.source}.weight"
        if number == 1 and control is not None:  # the IC-LoRA's control video, beside its LoRA on stage 1
            assert clip.control is not None  # `control` is made from it
            files["control"] = clip.control.video
            params["control"] = control
        if stage.lora is not None:
            lora = getattr(settings.weights, stage.lora)
            params["lora"] = {"file": lora.file, "strength": lora.strength}
        if clip.continues is not None:
            inputs["context"] = frames_of(clip.continues)
            params["context"] = tail_range(timeline.clip(clip.continues), clip.overlap)
            drift = clip.knobs.get("drift_control")
            if number == 1 and drift:
                inputs["reference"] = f"{_chain_root(clip, timeline).id}/stage1"
                params["drift_control"] = drift
        # a checkpoint holds the transformer and its text connectors
        parts: list[str | Part] = [found.transformer] if found.transformer else ["transformer", "connectors"]
        if params["lora"] is not None and found.lora is not None:
            parts.append(found.lora)
        identity = found.identity(*parts)
        sources = {
            "width": clip.sources["size"],
            "height": clip.sources["size"],
            "frames": clip.sources["frames"],
            "fps": clip.sources["fps"],
            "seed": clip.sources["seed"],
            "steps": clip.sources.get("steps", f"profile {clip.profile.name}"),
            "guidance": f"profile {clip.profile.name}",
            "guidance.cfg": clip.sources.get("guidance", f"profile {clip.profile.name}"),
            "guidance.stg": clip.sources.get("stg", f"profile {clip.profile.name}"),
            "guidance.audio_stg": clip.sources.get("stg", f"profile {clip.profile.name}"),
            "guidance.stg_blocks": clip.sources.get("stg", f"profile {clip.profile.name}"),
            "conditions": f"clips[{clip.index}].conditioning",
            "context": clip.sources.get("overlap", "continue"),
            "drift_control": clip.sources.get("drift_control", "drift_control"),
            "sigmas": f"profile {clip.profile.name}",
            "noise_scale": f"profile {clip.profile.name}",
            "precision": f"profile {clip.profile.name}",
            "numerics": "speed policy",
            "lora": f"profile {clip.profile.name}",
            "crf": f"profile {clip.profile.name}",
            "control": f"clips[{clip.index}].control",
            **lora_sources,
        }
        runtime = _runtime(found)
        storage = settings.precision.storage
        held = held_storage(storage)
        stored = storage if held == storage else f"{storage} dequantized to {held} at load"
        runtime["model"] = (
            f"transformer {runtime['transformer_file'] or ''} {stored} ({numerics.label}) in {weights.folder}"
        )
        if loras:  # clips with the same adapters run together (the executor groups nodes by `model`)
            runtime["model"] += " with LoRAs " + ", ".join(lora.asset.written for lora in loras)
        return Node(
            f"{clip.id}/stage{number}",
            SAMPLE,
            params,
            inputs,
            files,
            clip.id,
            f"{identity}:{settings.precision.storage}",
            sources,
            meta=runtime,
        )

    def _guidance(self, clip: ResolvedClip, settings: Ltx2Settings) -> dict[str, Any]:
        guidance = settings.guidance.model_dump()
        guidance["cfg"] = _cfg(clip, settings)
        if "stg" in clip.knobs:  # the knob sets video and audio STG alike
            guidance["stg"] = guidance["audio_stg"] = clip.knobs["stg"]
        if guidance["stg"] == 0 and guidance["audio_stg"] == 0:
            guidance["stg_blocks"] = []
        return guidance

    def _upsample_node(self, clip: ResolvedClip, found: _Ready, previous: Node, factor: Fraction) -> Node:
        """Upsampling by `factor` (2 as before upsamplers other than x2 existed, so x2 keys stay as they were)."""
        exact = int(factor) if factor.denominator == 1 else float(factor)
        params = {"factor": exact, "precision": previous.params["precision"]["compute"]}
        upsampler = found.upsampler
        return Node(
            f"{clip.id}/upsample",
            UPSAMPLE,
            params,
            {"latents": previous.id},
            {},
            clip.id,
            found.identity(upsampler, "vae"),
            {},
            meta={
                "weights": str(found.weights.folder),
                "upsampler": upsampler.path.name,
                "upsampler_weights": str(upsampler.path.parent),
            },
        )

    def _decode_node(
        self, clip: ResolvedClip, settings: Ltx2Settings, weights: WeightsSource, latents: Node, tiled: bool
    ) -> Node:
        """The decode node; `tiled` (the memory policy on a small GPU) is in its key only when set."""
        params = {
            "width": clip.width,
            "height": clip.height,
            "frames": clip.generated_frames,
            "fps": format_rate(clip.fps),
            "seed": clip.seed,
            "timestep": settings.decode.timestep,
            "noise_scale": settings.decode.noise_scale,
            "precision": settings.precision.compute,
        }
        if tiled:  # only then: keys of untiled decodes stay as they were
            params["tiled"] = True
        sources = {"seed": clip.sources["seed"], "width": clip.sources["size"], "height": clip.sources["size"]}
        return Node(
            f"{clip.id}/decode",
            DECODE,
            params,
            {"latents": latents.id},
            {},
            clip.id,
            weights.identity("vae", "audio_vae", "vocoder"),
            sources,
            meta={"weights": str(weights.folder)},
        )


def _runtime(found: _Ready) -> dict[str, Any]:
    """Where the weights are, for ops that load the sampling pipeline (not part of keys): the parts in the
    weights folder by name, others by path."""

    def where(part: Part | None) -> str | None:
        if part is None:
            return None
        return part.path.name if found.inside(part) else str(part.path)

    return {
        "weights": str(found.weights.folder),
        "transformer_file": where(found.transformer),
        "lora_file": where(found.lora),
    }


def _control(clip: ResolvedClip, lora: ClipLora) -> dict[str, Any]:
    """The stage-1 parameters of the clip's IC-LoRA control: its video's first frames (as many as the clip
    generates, 8k+1), how clean they look and how much smaller they are encoded (the LoRA's metadata)."""
    control = clip.control
    assert control is not None  # only called for clips with a control
    try:
        downscale = reference_downscale_factor(lora.asset.path)
    except ValueError as exc:
        raise SpecError([control.lora.issue(str(exc), "use an IC-LoRA with valid metadata")]) from None
    frames = (min(control.frames, clip.generated_frames) - 1) // 8 * 8 + 1
    return {"file": "control", "frames": frames, "strength": control.strength, "downscale": downscale}


def _cfg(clip: ResolvedClip, settings: Ltx2Settings) -> float:
    guidance = clip.knobs.get("guidance", settings.guidance.cfg)
    assert isinstance(guidance, int | float)  # the `guidance` setting is a number
    return float(guidance)
