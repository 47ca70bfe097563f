"""The `ltxv` backend: an LTX-Video 0.9.x clip as nodes at the multi-scale recipe's natural cache boundaries.

    prompt ──▶ pass1 ──▶ upsample ──▶ pass2 ──▶ decode (frames.mkv, no audio)

Pass 1 runs at 2/3 of the clip's size (multiples of 32), the upsampler doubles it, pass 2 refines at that
size and decode resizes to the clip's size, as Lightricks' multi-scale pipeline does. Editing a pass-2
setting re-runs pass 2 and decode only. A continued clip conditions both passes on the last `overlap`
frames of the clip it continues (any family's: they are pixels) at frame 0; `drift_control` pulls its
pass-1 latents towards the chain's first clip (AdaIN). The stitch gives the clips silence where a scene
mixes them with clips that have audio.
"""

from __future__ import annotations

from typing import Any

from scenekit.backends import ClipNodes, FramesOf
from scenekit.backends.machine import decodes_tiled, numerics_here
from scenekit.backends.prompts import prompt_node
from scenekit.conditioning import condition_params, tail_range
from scenekit.errors import SpecError, SpecIssue
from scenekit.graph.nodes import Node
from scenekit.ltxv.recipe import TEMPORAL, pass_size, schedule
from scenekit.ltxv.settings import LtxvSettings, Pass, ltxv_settings
from scenekit.runtime.speed import Numerics, held_storage
from scenekit.timeline import ResolvedClip, Timeline
from scenekit.units import format_rate
from scenekit.weights import MissingWeights, WeightsSource, resolve_weights

ENCODE_PROMPT = "ltxv.encode_prompt"
SAMPLE = "ltxv.sample"
UPSAMPLE = "ltxv.upsample"
DECODE = "ltxv.decode"


def _ready(clip: ResolvedClip, timeline: Timeline) -> tuple[LtxvSettings, WeightsSource, Numerics] | str:
    """The clip's profile settings, weights and transformer numerics, or why this machine cannot render it."""
    settings = ltxv_settings(clip.profile)
    precision = settings.precision
    numerics = numerics_here(clip, timeline, settings.speed, precision.compute, precision.storage)
    if isinstance(numerics, str):
        return numerics
    try:
        weights = resolve_weights(clip.profile.name, settings.weights.pipeline, timeline.models, settings.hub_files())
    except MissingWeights as exc:
        return str(exc)
    for ref, folders in (
        (settings.weights.checkpoint, ("transformer", "vae")),
        (settings.weights.upsampler, ("latent_upsampler",)),
    ):
        if (weights.folder / str(ref.file)).is_file():
            continue
        if weights.hub is None and all((weights.folder / name).is_dir() for name in folders):
            continue  # a local folder in diffusers' layout
        return (
            f"model `{clip.profile.name}` needs {ref.file}, which is not in {weights.folder}; "
            f"`hf download {ref.repo} {ref.file} --revision {ref.revision}` fetches it"
        )
    tokenizer = weights.folder / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file() and (tokenizer / "spiece.model").is_file() and not _has_spm():
        return (
            f"model `{clip.profile.name}` reads its T5 tokenizer from {tokenizer / 'spiece.model'}, which needs "
            "sentencepiece and protobuf: pip install 'scenekit[ltxv]'"
        )
    return settings, weights, numerics


def _has_spm() -> bool:
    """Whether sentencepiece and protobuf are installed (transformers reads `spiece.model` with them)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None for name in ("sentencepiece", "google.protobuf"))
    except ModuleNotFoundError:  # no `google` package at all
        return False


def _chain_root(clip: ResolvedClip, timeline: Timeline) -> ResolvedClip:
    while clip.continues is not None:
        clip = timeline.clip(clip.continues)
    return clip


def _check_keyframes(clip: ResolvedClip) -> None:
    """LTX-Video places a single frame at any frame; several frames at frame 0 or a multiple of 8 (>= 9 frames)."""
    issues = []
    for index, cond in enumerate(clip.conditions):
        at = clip.segment_start + cond.at
        if cond.kind == "image" or cond.frames == 1 or at == 0:
            continue
        if at % TEMPORAL or cond.frames < TEMPORAL + 1:
            lower = at - at % TEMPORAL
            issues.append(
                SpecIssue(
                    f"a {cond.frames}-frame conditioning lands on generated frame {at}; LTX-Video places several "
                    f"frames only at frame 0 or a multiple of {TEMPORAL}, and needs at least {TEMPORAL + 1} of them",
                    clip.at,
                    f"clips[{clip.index}].conditioning[{index}]",
                    f"move it to generated frame {lower} or {lower + TEMPORAL}, or use 9+ frames (or one)",
                )
            )
    if issues:
        raise SpecError(issues)


class LtxvBackend:
    """Expands a clip into prompt, pass-1, upsampling, pass-2 and decode nodes."""

    def machine_problem(self, clip: ResolvedClip, timeline: Timeline) -> str | None:
        """The profile's hardware needs, then its weights."""
        found = _ready(clip, timeline)
        return found if isinstance(found, str) else None

    def expand(self, clip: ResolvedClip, timeline: Timeline, frames_of: FramesOf) -> ClipNodes:
        found = _ready(clip, timeline)
        if isinstance(found, str):
            raise SpecError([clip.model_issue(found)])
        _check_keyframes(clip)
        settings, weights, numerics = found
        prompt = self._prompt_node(clip, settings, weights)
        first = self._pass_node(clip, timeline, settings, weights, numerics, 1, prompt, None, frames_of)
        upsample = self._upsample_node(clip, settings, weights, first)
        second = self._pass_node(clip, timeline, settings, weights, numerics, 2, prompt, upsample, frames_of)
        tiled = decodes_tiled(timeline)
        decode = self._decode_node(clip, settings, weights, second, tiled)
        return ClipNodes([prompt, first, upsample, second, decode], decode.id)

    @staticmethod
    def _guidance(clip: ResolvedClip, sampling: Pass, number: int) -> dict[str, Any]:
        guidance = sampling.guidance.model_dump()
        if number == 1 and "guidance" in clip.knobs:  # the knob sets a constant CFG for pass 1
            guidance["cfg"] = float(clip.knobs["guidance"])  # type: ignore[arg-type]  # a number by the spec's schema
        if "stg" in clip.knobs and guidance["stg_blocks"]:  # the knob sets a constant STG scale for both passes
            guidance["stg"] = float(clip.knobs["stg"])  # type: ignore[arg-type]  # a number by the spec's schema
        if not _any_above_one(guidance["cfg"]):  # CFG-star scales the unconditional prediction: nothing without CFG
            guidance["cfg_star_rescale"] = False
        return guidance

    @staticmethod
    def _step_cache(clip: ResolvedClip, sampling: Pass) -> float | None:
        """The pass's First Block Cache threshold: the clip's `step_cache` (0: off), else the profile's."""
        threshold = clip.knobs.get("step_cache", sampling.step_cache)
        if threshold is None:
            return None
        return float(threshold) or None  # type: ignore[arg-type]  # a number by the spec's schema

    def _guided(self, clip: ResolvedClip, settings: LtxvSettings) -> bool:
        passes = ((1, settings.first_pass), (2, settings.second_pass))
        return any(_any_above_one(self._guidance(clip, sampling, number)["cfg"]) for number, sampling in passes)

    def _prompt_node(self, clip: ResolvedClip, settings: LtxvSettings, weights: WeightsSource) -> Node:
        guided = self._guided(clip, settings)
        return prompt_node(
            clip,
            ENCODE_PROMPT,
            weights,
            negative_prompt=str(clip.knobs.get("negative_prompt", settings.negative_prompt)) if guided else None,
            max_sequence_length=settings.max_sequence_length,
            precision=settings.precision.compute,
            encoder="T5 text encoder",
        )

    def _pass_node(
        self,
        clip: ResolvedClip,
        timeline: Timeline,
        settings: LtxvSettings,
        weights: WeightsSource,
        numerics: Numerics,
        number: int,
        prompt: Node,
        previous: Node | None,
        frames_of: FramesOf,
    ) -> Node:
        sampling = settings.first_pass if number == 1 else settings.second_pass
        conditions, cond_inputs, files = condition_params(clip, timeline, frames_of)
        inputs: dict[str, str] = {"prompt": prompt.id, **cond_inputs}
        if previous is not None:
            inputs["latents"] = previous.id
        width, height = pass_size(clip.width, clip.height, settings.downscale)
        scale = 1 if number == 1 else 2
        params: dict[str, Any] = {
            "width": width * scale,
            "height": height * scale,
            "target_width": clip.width,
            "target_height": clip.height,
            "frames": clip.generated_frames,
            "fps": format_rate(clip.fps),
            "seed": clip.seed,
            "timesteps": schedule(sampling.timesteps, sampling.steps, sampling.skip_initial, sampling.skip_final),
            "guidance": self._guidance(clip, sampling, number),
            "image_cond_noise_scale": settings.image_cond_noise_scale,
            "step_cache": self._step_cache(clip, sampling),
            "crf": settings.conditioning_crf,
            "precision": settings.precision.model_dump(),
            "numerics": numerics.as_params(),
            "conditions": conditions,
            "context": None,
            "context_strength": settings.continuation_strength,
            "drift_control": None,
        }
        if clip.continues is not None:
            inputs["context"] = frames_of(clip.continues)
            params["context"] = tail_range(timeline.clip(clip.continues), clip.overlap)
            drift = clip.knobs.get("drift_control")
            if number == 1 and drift:
                inputs["reference"] = f"{_chain_root(clip, timeline).id}/pass1"
                params["drift_control"] = drift
        sources = {
            "width": clip.sources["size"],
            "height": clip.sources["size"],
            "target_width": clip.sources["size"],
            "target_height": clip.sources["size"],
            "frames": clip.sources["frames"],
            "fps": clip.sources["fps"],
            "seed": clip.sources["seed"],
            "guidance": f"profile {clip.profile.name}",
            "guidance.cfg": clip.sources.get("guidance", f"profile {clip.profile.name}"),
            "guidance.stg": clip.sources.get("stg", f"profile {clip.profile.name}"),
            "step_cache": clip.sources.get("step_cache", f"profile {clip.profile.name}"),
            "conditions": f"clips[{clip.index}].conditioning",
            "context": clip.sources.get("overlap", "continue"),
            "drift_control": clip.sources.get("drift_control", "drift_control"),
            "numerics": "speed policy",
        }
        storage = settings.precision.storage
        held = held_storage(storage)
        stored = storage if held == storage else f"{storage} dequantized to {held} at load"
        checkpoint = str(settings.weights.checkpoint.file)
        meta = {
            "weights": str(weights.folder),
            "checkpoint": checkpoint,
            "model": f"transformer {checkpoint} {stored} ({numerics.label}) in {weights.folder}",
        }
        return Node(
            f"{clip.id}/pass{number}",
            SAMPLE,
            params,
            inputs,
            files,
            clip.id,
            f"{_model_identity(weights, checkpoint, ('transformer',))}:{storage}",
            sources,
            meta=meta,
        )

    def _upsample_node(self, clip: ResolvedClip, settings: LtxvSettings, weights: WeightsSource, first: Node) -> Node:
        checkpoint, upsampler = str(settings.weights.checkpoint.file), str(settings.weights.upsampler.file)
        identity = _model_identity(weights, upsampler, ("latent_upsampler",))
        identity += "+" + _model_identity(weights, checkpoint, ("vae",))
        return Node(
            f"{clip.id}/upsample",
            UPSAMPLE,
            {"adain": settings.adain, "precision": settings.precision.compute},
            {"latents": first.id},
            {},
            clip.id,
            identity,
            {},
            meta={"weights": str(weights.folder), "checkpoint": checkpoint, "upsampler": upsampler},
        )

    def _decode_node(
        self, clip: ResolvedClip, settings: LtxvSettings, weights: WeightsSource, second: Node, tiled: bool
    ) -> Node:
        """The decode node; `tiled` (the memory policy on a small GPU) is in its key only when set."""
        checkpoint = str(settings.weights.checkpoint.file)
        params = {
            "width": clip.width,
            "height": clip.height,
            "frames": clip.generated_frames,
            "fps": format_rate(clip.fps),
            "timestep": settings.decode.timestep,
            "noise_scale": settings.decode.noise_scale,
            "tone_map": settings.second_pass.tone_map,
            "precision": settings.precision.compute,
        }
        if tiled:  # only then: keys of untiled decodes stay as they were
            params["tiled"] = True
        return Node(
            f"{clip.id}/decode",
            DECODE,
            params,
            {"latents": second.id},
            {},
            clip.id,
            _model_identity(weights, checkpoint, ("vae",)),
            {"width": clip.sources["size"], "height": clip.sources["size"]},
            meta={"weights": str(weights.folder), "checkpoint": checkpoint},
        )


def _any_above_one(scale: float | list[float]) -> bool:
    """Whether a CFG scale (or schedule) guides at any step."""
    return any(value > 1.0 for value in (scale if isinstance(scale, list) else [scale]))


def _model_identity(weights: WeightsSource, file: str, folders: tuple[str, ...]) -> str:
    """What a model is made of: its single file when the folder has it, else its diffusers folders."""
    return weights.identity(file) if (weights.folder / file).is_file() else weights.identity(*folders)
