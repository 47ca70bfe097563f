"""The `ltx2` backend: an LTX-2 clip as nodes at the natural cache boundaries.

    prompt ──▶ stage1 ──▶ upsample ──▶ stage2 ──▶ decode (frames.mkv + audio.wav)

Prompt embeddings depend only on the text encoder, so clips on different LTX-2 variants share
them; editing only stage-2 settings re-runs stage 2 and decode. A continued clip conditions its
stages on the tail of the clip it continues; `drift_control` pulls its stage-1 latents towards the
statistics of the chain's first clip (AdaIN).
"""

from __future__ import annotations

from typing import Any

from scenekit.backends import ClipNodes, FramesOf
from scenekit.conditioning import condition_params, tail_range
from scenekit.errors import SpecError
from scenekit.graph.nodes import Node
from scenekit.hardware import compute_device, why_profile_cannot_run
from scenekit.ltx2.settings import Ltx2Settings, Stage, ltx2_settings
from scenekit.runtime.speed import Numerics, SpeedUnavailable, held_storage, resolve_numerics, this_machine
from scenekit.timeline import ResolvedClip, Timeline
from scenekit.units import format_rate
from scenekit.weights import MissingWeights, WeightsSource, resolve_weights

ENCODE_PROMPT = "ltx2.encode_prompt"
SAMPLE = "ltx2.sample"
UPSAMPLE = "ltx2.upsample"
DECODE = "ltx2.decode"


def _ready(clip: ResolvedClip, timeline: Timeline) -> tuple[Ltx2Settings, WeightsSource, Numerics] | str:
    """The clip's profile settings, weights and transformer numerics, or why this machine cannot render the clip."""
    settings = ltx2_settings(clip.profile)
    reason = why_profile_cannot_run(clip.profile)
    if reason:
        return reason
    precision = settings.precision
    try:
        numerics = resolve_numerics(
            timeline.speed or settings.speed, precision.compute, precision.storage, this_machine(compute_device())
        )
    except SpeedUnavailable as exc:
        return f"model `{clip.profile.name}`: {exc}"
    try:
        weights = resolve_weights(clip.profile.name, settings.weights.pipeline, timeline.models)
    except MissingWeights as exc:
        return str(exc)
    transformer = settings.weights.transformer
    transformer_file = transformer.file if transformer is not None else None
    if transformer_file is not None and weights.hub is not None and not (weights.folder / transformer_file).is_file():
        # in the hub snapshot `transformer/` is another variant: never fall back to it
        return (
            f"model `{clip.profile.name}` needs {transformer_file}, which is not in the snapshot {weights.folder}; "
            f"`scenekit fetch {clip.profile.name}` downloads it"
        )
    lora = settings.weights.distilled_lora
    lora_file = lora.file if lora is not None else None
    if (
        lora_file is not None
        and any(stage.lora for stage in settings.stages)
        and not (weights.folder / lora_file).is_file()
    ):
        return (
            f"model `{clip.profile.name}` refines with the LoRA {lora_file}, which is not in {weights.folder}; "
            f"`scenekit fetch {clip.profile.name}` downloads it"
        )
    return settings, weights, numerics


def _chain_root(clip: ResolvedClip, timeline: Timeline) -> ResolvedClip:
    while clip.continues is not None:
        clip = timeline.clip(clip.continues)
    return clip


class Ltx2Backend:
    """Expands a clip into prompt, sampling, upsampling and decode nodes."""

    def machine_problem(self, clip: ResolvedClip, timeline: Timeline) -> str | None:
        """The profile's hardware needs, then its weights."""
        found = _ready(clip, timeline)
        return found if isinstance(found, str) else None

    def expand(self, clip: ResolvedClip, timeline: Timeline, frames_of: FramesOf) -> ClipNodes:
        found = _ready(clip, timeline)
        if isinstance(found, str):
            raise SpecError([clip.model_issue(found)])
        settings, weights, numerics = found
        prompt = self._prompt_node(clip, settings, weights)
        nodes = [prompt]
        previous: Node | None = None
        for number, stage in enumerate(settings.stages, start=1):
            if previous is not None and stage.scale > settings.stages[number - 2].scale:
                previous = self._upsample_node(clip, settings, weights, previous)
                nodes.append(previous)
            previous = self._stage_node(
                clip, timeline, settings, weights, numerics, stage, number, prompt, previous, frames_of
            )
            nodes.append(previous)
        assert previous is not None, f"profile {clip.profile.name} has no sampling stage"
        decode = self._decode_node(clip, settings, weights, previous)
        nodes.append(decode)
        return ClipNodes(nodes, decode.id)

    def _prompt_node(self, clip: ResolvedClip, settings: Ltx2Settings, weights: WeightsSource) -> Node:
        guidance = self._guidance(clip, settings)  # as the guided stage will use it: CFG needs a negative prompt
        guided = any(stage.guided for stage in settings.stages) and max(guidance["cfg"], guidance["audio_cfg"]) > 1.0
        params = {
            "prompt": clip.prompt,
            "negative_prompt": clip.knobs.get("negative_prompt", "") if guided else None,
            "max_sequence_length": settings.max_sequence_length,
            "precision": settings.precision.compute,
        }
        sources = {
            "prompt": clip.sources["prompt"],
            "negative_prompt": clip.sources.get("negative_prompt", "negative_prompt"),
        }
        return Node(
            f"{clip.id}/prompt",
            ENCODE_PROMPT,
            params,
            {},
            {},
            clip.id,
            weights.identity("text_encoder", "tokenizer"),
            sources,
            meta={"weights": str(weights.folder), "model": f"text encoder in {weights.folder}"},
        )

    def _stage_node(
        self,
        clip: ResolvedClip,
        timeline: Timeline,
        settings: Ltx2Settings,
        weights: WeightsSource,
        numerics: Numerics,
        stage: Stage,
        number: int,
        prompt: Node,
        previous: Node | None,
        frames_of: FramesOf,
    ) -> Node:
        conditions, cond_inputs, files = condition_params(clip, timeline, frames_of)
        inputs: dict[str, str] = {"prompt": prompt.id, **cond_inputs}
        if previous is not None:
            inputs["latents"] = previous.id
        steps = clip.knobs.get("steps", stage.steps) if stage.guided else stage.steps
        params: dict[str, Any] = {
            "width": int(clip.width * stage.scale),
            "height": int(clip.height * stage.scale),
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
        transformer = settings.weights.transformer
        if transformer is not None and transformer.file is not None and (weights.folder / transformer.file).exists():
            parts = [transformer.file]  # the checkpoint holds the transformer and its text connectors
        else:
            parts = ["transformer", "connectors"]
        if params["lora"] is not None:
            parts.append(params["lora"]["file"])
        identity = weights.identity(*parts)
        sources = {
            "width": clip.sources["size"],
            "height": clip.sources["size"],
            "frames": clip.sources["frames"],
            "fps": clip.sources["fps"],
            "seed": clip.sources["seed"],
            "steps": clip.sources.get("steps", f"profile {clip.profile.name}"),
            "guidance": "guidance settings",
            "conditions": f"clips[{clip.index}].conditioning",
            "context": clip.sources.get("overlap", "continue"),
            "drift_control": clip.sources.get("drift_control", "drift_control"),
            "sigmas": f"profile {clip.profile.name}",
            "noise_scale": f"profile {clip.profile.name}",
            "precision": f"profile {clip.profile.name}",
            "numerics": "speed policy",
            "lora": f"profile {clip.profile.name}",
            "crf": f"profile {clip.profile.name}",
        }
        runtime = _runtime(weights, settings)
        storage = settings.precision.storage
        held = held_storage(storage)
        stored = storage if held == storage else f"{storage} dequantized to {held} at load"
        runtime["model"] = (
            f"transformer {runtime['transformer_file'] or ''} {stored} ({numerics.label}) in {weights.folder}"
        )
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

    def _upsample_node(
        self, clip: ResolvedClip, settings: Ltx2Settings, weights: WeightsSource, previous: Node
    ) -> Node:
        params = {"factor": 2, "precision": previous.params["precision"]["compute"]}
        subfolder = settings.weights.upsampler_folder
        return Node(
            f"{clip.id}/upsample",
            UPSAMPLE,
            params,
            {"latents": previous.id},
            {},
            clip.id,
            weights.identity(subfolder, "vae"),
            {},
            meta={"weights": str(weights.folder), "upsampler": subfolder},
        )

    def _decode_node(self, clip: ResolvedClip, settings: Ltx2Settings, weights: WeightsSource, latents: Node) -> Node:
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


def _runtime(weights: WeightsSource, settings: Ltx2Settings) -> dict[str, Any]:
    """Where the weights are, for ops that load the sampling pipeline (not part of keys)."""
    transformer, lora = settings.weights.transformer, settings.weights.distilled_lora
    uses_lora = any(stage.lora for stage in settings.stages)
    return {
        "weights": str(weights.folder),
        "transformer_file": transformer.file if transformer else None,
        "lora_file": lora.file if lora is not None and uses_lora else None,
    }


def _cfg(clip: ResolvedClip, settings: Ltx2Settings) -> float:
    guidance = clip.knobs.get("guidance", settings.guidance.cfg)
    assert isinstance(guidance, int | float)  # the `guidance` setting is a number
    return float(guidance)
