"""Resolve a validated spec into a frame-exact timeline: every clip's settings, lengths and joins.

Semantics: a clip occupies `frames_i` frames on the final timeline; a transition of `t` frames
overlaps two clips, so the output has `sum(frames_i) - sum(t_j)` frames. A clip that continues
another is generated as `overlap` context frames followed by new frames; its timeline segment
starts right after the context, or `t` frames earlier when a transition blends the two over the
re-rendered context. Generated lengths are snapped to the profile's frame rule and trimmed.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal, overload

import networkx as nx

from scenekit.errors import FieldPath, Location, SpecError, SpecIssue
from scenekit.media.probe import check_image, check_video
from scenekit.media.video import MAX_OUTPUT_SIDE
from scenekit.output_file import output_problem
from scenekit.profiles import ModelProfile
from scenekit.runtime.speed import Machine
from scenekit.spec.assets import Asset, cached_sha256
from scenekit.spec.loader import LoadedSpec
from scenekit.spec.models import Clip, Conditioning, Control, LoraEntry
from scenekit.spec.paths import PathPolicy
from scenekit.units import Duration, parse_duration, parse_fps, parse_size
from scenekit.userconfig import ModelsMapping, config_path

DEFAULT_PROFILE = "preview"
KNOBS = ("negative_prompt", "steps", "guidance", "stg", "drift_control", "step_cache")
DEFAULT_TRANSITION = Duration(seconds=Fraction(1, 2))


@dataclass(frozen=True)
class ResolvedCondition:
    """A conditioning source placed at a frame of its clip's timeline segment."""

    kind: Literal["image", "video", "clip"]
    at: int
    strength: float
    frames: int
    asset: Asset | None = None
    clip: str | None = None


@dataclass(frozen=True)
class ResolvedLora:
    """A LoRA of a clip: a file of the spec (`asset`), a file in a hub repo, or a preset for the backend to look
    up; its weight (None: the preset's, else 1) and the sampling stages it applies to (None: the profile's)."""

    written: str
    """As written: the file, `repo:file` or `preset NAME`."""
    weight: float | None
    stages: tuple[int, ...] | None
    source: str
    """The spec field it comes from (`clips[1].loras[0]`, `defaults.loras[0]`)."""
    at: Location | None = None
    asset: Asset | None = None
    repo: str | None = None
    revision: str | None = None
    file: str | None = None
    preset: str | None = None

    def issue(self, message: str, hint: str | None = None) -> SpecIssue:
        """A problem with this LoRA, located at its entry."""
        return SpecIssue(message, self.at, self.source, hint)


@dataclass(frozen=True)
class ResolvedControl:
    """An IC-LoRA control of a clip: the LoRA (on stage 1), the control video and its frame count, how clean
    its frames look to the model."""

    lora: ResolvedLora
    video: Asset
    frames: int
    strength: float
    source: str


@dataclass
class ResolvedClip:
    """A clip with every setting decided and every length in frames."""

    index: int
    id: str
    prompt: str
    profile: ModelProfile
    width: int
    height: int
    fps: Fraction
    seed: int
    frames: int
    continues: str | None
    overlap: int
    transition: Literal["cut", "crossfade", "fade"]
    transition_frames: int
    conditions: list[ResolvedCondition]
    sources: dict[str, str] = field(default_factory=dict)
    knobs: dict[str, object] = field(default_factory=dict)
    model_at: Location | None = None
    """Where the clip's model was chosen (None: `--model` or the default)."""
    at: Location | None = None
    """Where the clip is written in the spec."""
    loras: list[ResolvedLora] = field(default_factory=list)
    """LoRAs of `defaults` and the clip's own, for profiles that take them (weight 0 dropped)."""
    control: ResolvedControl | None = None

    def model_issue(self, message: str) -> SpecIssue:
        """A problem with the clip's model on this machine, located where the model was chosen."""
        return SpecIssue(message, self.model_at, self.sources.get("model"))

    @property
    def depends_on(self) -> list[str]:
        """Ids of the clips this one builds on: the one it continues and those it is conditioned on."""
        targets = [self.continues] + [c.clip for c in self.conditions if c.kind == "clip"]
        return [t for t in targets if t is not None]

    @property
    def blended_context(self) -> int:
        """Re-rendered context frames kept on the timeline to blend a transition over."""
        return self.transition_frames if self.continues else 0

    @property
    def segment_start(self) -> int:
        """Index of the first generated frame that lands on the timeline."""
        return self.overlap - self.blended_context

    @property
    def generated_frames(self) -> int:
        """Frames the model generates: context plus segment, snapped to the profile's rule."""
        return self.profile.constraints.snap_frames(self.segment_start + self.frames)


@dataclass
class Timeline:
    """The resolved scene: clips in order and the output settings."""

    name: str
    clips: list[ResolvedClip]
    output_file: Path
    crf: int
    preset: str
    sources: dict[str, str]
    size: tuple[int, int]
    """The output's width and height (`output.size`, else the first clip's); other clips are fitted inside."""
    models: list[ModelsMapping] = field(default_factory=list)
    """Where weights are named, first match wins: the spec's `models:`, then the user config's."""
    fade_in: int = 0
    """Frames over which the scene fades in from black (and silence); `fade_out` likewise at its end."""
    fade_out: int = 0
    speed: str | None = None
    """The speed policy every model runs with (`scenekit.runtime.speed`); None: each profile's own."""
    memory: str = "auto"
    """The memory policy (`scenekit.runtime.memory`): it decides whether VAE decodes run in tiles."""
    gpus_per_clip: int = 1
    """GPUs each sampling stage runs across (`scenekit.runtime.parallel`); in no key: outputs are the same."""
    machine: Machine | None = None
    """The machine the model nodes run on, when not this process's (a Ray cluster's GPUs, `scenekit.backends.machine`)."""

    @property
    def fps(self) -> Fraction:
        return self.clips[0].fps

    @property
    def total_frames(self) -> int:
        return total_frames(self.clips)

    def clip(self, clip_id: str) -> ResolvedClip:
        return next(c for c in self.clips if c.id == clip_id)

    def starts(self) -> list[int]:
        """First timeline frame of every clip."""
        starts, position = [], 0
        for clip in self.clips:
            position -= clip.transition_frames
            starts.append(position)
            position += clip.frames
        return starts


def step_neighbours(count: int, step: int) -> tuple[int, int]:
    """The k*step + 1 values at or below `count` and just above it."""
    below = count - (count - 1) % step
    return below, below + step


def size_hint(width: int, height: int, multiple: int, min_side: int, max_side: int) -> str:
    """`WxH`: the size nearest `width x height` in aspect whose sides are multiples of `multiple` within
    `min_side..max_side`."""
    low, high = -(-min_side // multiple) * multiple, max_side // multiple * multiple
    scale = min(max(1.0, low / min(width, height)), high / max(width, height))
    width, height = (min(high, max(low, round(side * scale / multiple) * multiple)) for side in (width, height))
    return f"{width}x{height}"


def total_frames(clips: list[ResolvedClip]) -> int:
    """Frames on the timeline: every clip's, less the frames its transition overlaps the one before."""
    return sum(c.frames for c in clips) - sum(c.transition_frames for c in clips)


class _Resolver:
    """Collects every semantic issue of a spec while resolving it."""

    def __init__(
        self,
        loaded: LoadedSpec,
        policy: PathPolicy,
        profiles: dict[str, ModelProfile],
        model: str | None,
        size: tuple[int, int] | None,
        output_file: Callable[[Path], Path] | None = None,
    ):
        self.loaded = loaded
        self.output_file = output_file
        self.spec = loaded.spec
        self.policy = policy
        self.profiles = profiles
        self.model_override = model
        self.size_override = size
        self.issues: list[SpecIssue] = []

    def fail(self, path: FieldPath, message: str, hint: str | None = None) -> None:
        sources = self.loaded.sources
        self.issues.append(SpecIssue(message, sources.locate(path), sources.display(path), hint))

    @overload
    def setting(self, clip_index: int, clip: Clip, name: Literal["model"]) -> tuple[str | None, FieldPath | None]: ...
    @overload
    def setting(
        self, clip_index: int, clip: Clip, name: Literal["size"]
    ) -> tuple[tuple[int, int] | None, FieldPath | None]: ...
    @overload
    def setting(
        self, clip_index: int, clip: Clip, name: Literal["fps"]
    ) -> tuple[Fraction | None, FieldPath | None]: ...
    @overload
    def setting(self, clip_index: int, clip: Clip, name: Literal["seed"]) -> tuple[int | None, FieldPath | None]: ...
    @overload
    def setting(self, clip_index: int, clip: Clip, name: str) -> tuple[object, FieldPath | None]: ...

    def setting(self, clip_index: int, clip: Clip, name: str) -> tuple[object, FieldPath | None]:
        """A clip setting and the field it came from: the clip, `defaults`, or the profile (None)."""
        if getattr(clip, name) is not None:
            return getattr(clip, name), ("clips", clip_index, name)
        if getattr(self.spec.defaults, name) is not None:
            return getattr(self.spec.defaults, name), ("defaults", name)
        return None, None

    def resolve(self) -> Timeline | None:
        """The timeline, or None with `issues` saying what is wrong."""
        clips = [c for c in self.spec.clips if isinstance(c, Clip)]
        self.check_unique_ids(clips)
        resolved = [r for i, c in enumerate(clips) if (r := self.resolve_clip(i, c)) is not None]
        if not self.issues:
            by_id = {c.id: c for c in resolved}
            for clip in resolved:
                self.check_references(clip, by_id)
            self.check_cycles(resolved)
        if not self.issues:
            self.check_drift_references(resolved, clips)
            self.check_timeline(resolved, clips)
        output = self.resolve_output(resolved)
        self.check_model_folders()
        if self.issues:
            return None
        assert output is not None
        name = self.spec.name or self.loaded.path.stem
        fade_in, fade_out = self.resolve_fades(resolved)
        size = self.resolve_output_size(resolved[0], clips[0])
        if self.issues:
            return None
        return Timeline(
            name,
            resolved,
            output,
            self.spec.output.crf,
            self.spec.output.preset,
            self.written_sources(),
            size,
            [self.models_mapping()],
            fade_in,
            fade_out,
        )

    def resolve_output_size(self, first: ResolvedClip, written: Clip) -> tuple[int, int]:
        """The output's size: `output.size`, else the first clip's (`--size` sets both); H.264 takes even sides up to a limit."""
        origin: FieldPath
        if self.size_override is None and self.spec.output.size is not None:
            (width, height), origin, by = self.spec.output.size, ("output", "size"), ""
        else:
            width, height = first.width, first.height
            origin = self.setting(0, written, "size")[1] or ("clips", 0)
            by = " (from --size)" if self.size_override is not None else ""
        if width % 2 or height % 2 or max(width, height) > MAX_OUTPUT_SIDE:
            self.fail(
                origin,
                f"the output size {width}x{height}{by} must be even on both sides and at most {MAX_OUTPUT_SIDE} "
                "pixels a side (H.264, yuv420p)",
                f"use {size_hint(width, height, 2, 2, MAX_OUTPUT_SIDE)}",
            )
        return width, height

    def resolve_fades(self, clips: list[ResolvedClip]) -> tuple[int, int]:
        """The scene's fade in and out, in frames; both together fit in the scene."""
        fps, total = clips[0].fps, total_frames(clips)
        frames = {}
        for name in ("fade_in", "fade_out"):
            duration = getattr(self.spec.output, name)
            frames[name] = duration.to_frames(fps) if duration is not None else 0
        if frames["fade_in"] + frames["fade_out"] > total:
            name = "fade_out" if frames["fade_out"] else "fade_in"
            self.fail(
                ("output", name),
                f"the fades ({frames['fade_in']} + {frames['fade_out']} frames) are longer than the scene "
                f"({total} frames)",
                "shorten the fades",
            )
        return frames["fade_in"], frames["fade_out"]

    def models_mapping(self) -> ModelsMapping:
        """The spec's `models:`, folders relative to the spec."""
        return ModelsMapping("models", dict(self.spec.models), self.loaded.path.parent)

    def check_model_folders(self) -> None:
        """Weights folders a spec names stay inside the project like its assets (hub repo ids go anywhere)."""
        mapping = self.models_mapping()
        for profile in mapping.entries:
            folder = mapping.folder(profile)
            if not os.path.isdir(folder):  # never raises (a name too long is simply not a folder)
                continue  # a hub repo id (or a folder that is not there: weights resolution reports it)
            try:
                self.policy.resolve(str(folder), mapping.base)
            except ValueError as exc:
                self.fail(
                    ("models", profile),
                    str(exc),
                    f"folders on this machine belong in the user config ({config_path()}), not in the spec",
                )

    def written_sources(self) -> dict[str, str]:
        display = self.loaded.sources.display
        return {"output.crf": display(("output", "crf")), "output.preset": display(("output", "preset"))}

    def check_unique_ids(self, clips: list[Clip]) -> None:
        display = self.loaded.sources.display
        seen: dict[str, int] = {}
        for index, clip in enumerate(clips):
            if clip.id not in seen:
                seen[clip.id] = index
                continue
            first = display(("clips", seen[clip.id], "id"))
            if first == display(("clips", index, "id")):
                self.fail(
                    ("clips", index, "id"),
                    f"duplicate clip id `{clip.id}`: the loop generates it more than once",
                    'make the id depend on the loop, e.g. `id: "shot-{{ loop.index }}"`',
                )
            else:
                self.fail(
                    ("clips", index, "id"),
                    f"duplicate clip id `{clip.id}` (also {first})",
                    "give every clip its own id",
                )

    def resolve_profile(self, index: int, clip: Clip) -> tuple[ModelProfile | None, FieldPath | None]:
        name, origin = self.setting(index, clip, "model")
        if self.model_override:
            name, origin = self.model_override, None
        name = name or DEFAULT_PROFILE
        if name not in self.profiles:
            close = difflib.get_close_matches(str(name), list(self.profiles), n=1)
            hint = (
                f"did you mean `{close[0]}`? " if close else ""
            ) + f"Available: {', '.join(sorted(self.profiles))} (`scenekit profiles` lists them)"
            if origin is None:
                raise SpecError([SpecIssue(f"unknown model profile `{name}` (from --model)", hint=hint)])
            self.fail(origin, f"unknown model profile `{name}`", hint)
            return None, origin
        return self.profiles[str(name)], origin

    def resolve_clip(self, index: int, clip: Clip) -> ResolvedClip | None:
        before = len(self.issues)
        display = self.loaded.sources.display
        profile, model_origin = self.resolve_profile(index, clip)
        if profile is None:
            return None
        sources = {
            "prompt": display(("clips", index, "prompt")),
            "model": display(model_origin) if model_origin else "--model/default",
        }
        size, size_origin = self.setting(index, clip, "size")
        size = size or parse_size(profile.defaults.size)
        fps, fps_origin = self.setting(index, clip, "fps")
        fps = fps or parse_fps(profile.defaults.fps)
        seed, seed_origin = self.setting(index, clip, "seed")
        for name, origin in (("size", size_origin), ("fps", fps_origin), ("seed", seed_origin)):
            sources[name] = display(origin) if origin else f"profile {profile.name} default"
        if self.size_override is not None:
            size, size_origin, sources["size"] = self.size_override, None, "--size"
        width, height = size
        self.check_size(
            profile, width, height, size_origin or ("clips", index), " (from --size)" if self.size_override else ""
        )
        length_field = ("clips", index, "frames" if clip.frames is not None else "duration")
        sources["frames"] = display(length_field)
        if clip.frames is not None:
            frames = clip.frames
        else:
            assert clip.duration is not None  # a Clip has exactly one of `duration` and `frames`
            frames = clip.duration.to_frames(fps)
        if frames < 1:
            self.fail(
                length_field,
                f"the clip is {frames} frames long at {float(fps):g} fps",
                "make it at least one frame long",
            )
        overlap = 0
        if clip.continue_ is not None:
            overlap = clip.overlap if clip.overlap is not None else profile.defaults.overlap
            sources["overlap"] = (
                display(("clips", index, "overlap")) if clip.overlap is not None else f"profile {profile.name} default"
            )
            step = profile.constraints.overlap_step
            if not profile.constraints.valid_overlap(overlap):
                below, above = step_neighbours(overlap, step)
                self.fail(
                    ("clips", index, "overlap"),
                    f"overlap must be {step}k+1 frames for model `{profile.name}`; got {overlap}",
                    f"use {' or '.join(str(n) for n in sorted({below, above}) if n > 0)}",
                )
        transition, transition_frames = self.resolve_transition(index, clip, fps)
        sources["transition"] = display(("clips", index, "transition"))
        conditions = [
            c
            for j, cond in enumerate(clip.conditioning)
            if (c := self.resolve_condition(index, j, cond, fps, frames)) is not None
        ]
        knobs = self.resolve_knobs(index, clip, profile, sources)
        loras = self.resolve_loras(index, clip, profile)
        control = self.resolve_control(index, clip.control, profile) if clip.control is not None else None
        if len(self.issues) > before:
            return None
        resolved = ResolvedClip(
            index,
            clip.id,
            clip.prompt,
            profile,
            width,
            height,
            fps,
            seed if seed is not None else 0,
            frames,
            clip.continue_,
            overlap,
            transition,
            transition_frames,
            conditions,
            sources,
            knobs,
            self.loaded.sources.locate(model_origin) if model_origin else None,
            self.loaded.sources.locate(("clips", index)),
            loras,
            control,
        )
        for j, cond in enumerate(conditions):
            generated = resolved.segment_start + cond.at
            if not profile.constraints.valid_keyframe(generated):
                below, above = step_neighbours(generated, profile.constraints.keyframe_step)
                options = [
                    f - resolved.segment_start for f in (below, above) if 0 <= f - resolved.segment_start < frames
                ]
                self.fail(
                    ("clips", index, "conditioning", j, "frame"),
                    f"model `{profile.name}` places conditioning on latent frames: frame {cond.at} of this clip "
                    f"(generated frame {generated}) would land {generated - below} frame(s) earlier",
                    f"use frame {' or '.join(str(o) for o in options)}" if options else "condition another clip",
                )
        if resolved.generated_frames > profile.constraints.max_frames:
            self.fail(
                length_field,
                f"the clip needs {resolved.generated_frames} generated frames; model `{profile.name}` makes at most {profile.constraints.max_frames}",
                "split it into clips that continue each other",
            )
            return None
        return resolved

    def resolve_knobs(
        self, index: int, clip: Clip, profile: ModelProfile, sources: dict[str, str]
    ) -> dict[str, object]:
        """Model-specific settings (steps, guidance, ...) the clip or `defaults` set, checked against the profile."""
        knobs = {}
        for name in KNOBS:
            value, origin = self.setting(index, clip, name)
            if value is None:
                continue
            assert origin is not None  # a value set comes with the field it is set in
            if name not in profile.knobs:
                if self.model_override is None:
                    takes = ", ".join(profile.knobs) or "none of them"
                    others = sorted(p.name for p in self.profiles.values() if name in p.knobs)
                    self.fail(
                        origin,
                        f"model `{profile.name}` has no `{name}` setting",
                        f"remove it; `{profile.name}` takes: {takes}"
                        + (f" (`{name}` is a setting of {', '.join(others)})" if others else ""),
                    )
                continue
            knobs[name] = value
            sources[name] = self.loaded.sources.display(origin)
        return knobs

    def resolve_loras(self, index: int, clip: Clip, profile: ModelProfile) -> list[ResolvedLora]:
        """`defaults.loras` and the clip's own: a clip entry naming the same file or preset replaces the default's."""
        written: list[tuple[FieldPath, LoraEntry]] = [
            (("defaults", "loras", j), entry) for j, entry in enumerate(self.spec.defaults.loras or [])
        ] + [(("clips", index, "loras", j), entry) for j, entry in enumerate(clip.loras or [])]
        if not written:
            return []
        if "loras" not in profile.knobs:
            if self.model_override is None:
                self.fail(
                    written[-1][0],
                    f"model `{profile.name}` takes no LoRAs",
                    "remove `loras`, or choose a model whose profile has the `loras` knob",
                )
            return []
        chosen: dict[object, ResolvedLora] = {}
        for path, entry in written:
            lora = self.resolve_lora(path, entry)
            if lora is not None:
                chosen[(lora.preset, lora.repo, lora.asset.path if lora.asset else lora.file)] = lora
        return [lora for lora in chosen.values() if lora.weight != 0]

    def resolve_control(self, index: int, control: Control, profile: ModelProfile) -> ResolvedControl | None:
        """The IC-LoRA (a file or a preset, applied to stage 1) and its control video."""
        path = ("clips", index, "control")
        if "loras" not in profile.knobs:
            if self.model_override is None:
                self.fail(path, f"model `{profile.name}` takes no IC-LoRA control", "remove `control`")
            return None
        is_file = control.lora.endswith(".safetensors")
        entry = LoraEntry(
            file=control.lora if is_file else None,
            preset=None if is_file else control.lora,
            weight=control.weight,
            stages=[1],
        )
        lora = self.resolve_lora(path, entry, file_field="lora")
        try:
            video = self.policy.resolve(control.video, self.loaded.path.parent)
        except ValueError as exc:
            self.fail(path + ("video",), str(exc))
            return None
        if not video.is_file():
            self.fail(
                path + ("video",),
                f"video not found: {control.video}",
                f"check the path; it is relative to {self.loaded.path.parent.name}/",
            )
            return None
        try:
            frames = check_video(video, None)
        except ValueError as exc:
            self.fail(path + ("video",), str(exc), "use an mp4/mkv/webm video")
            return None
        if lora is None:
            return None
        asset = Asset(control.video, video, cached_sha256(video))
        return ResolvedControl(lora, asset, frames, control.strength, self.loaded.sources.display(path))

    def resolve_lora(self, path: FieldPath, entry: LoraEntry, file_field: str = "file") -> ResolvedLora | None:
        """One entry: a spec file is found and hashed; hub files and presets are the backend's to find."""
        entry_at = ResolvedLora(
            "",
            entry.weight,
            tuple(entry.stages) if entry.stages else None,
            self.loaded.sources.display(path),
            self.loaded.sources.locate(path),
        )
        if entry.preset is not None:
            return dataclasses.replace(entry_at, written=f"preset {entry.preset}", preset=entry.preset)
        assert entry.file is not None  # a LoraEntry has a file when it has no preset
        if not entry.file.endswith(".safetensors"):
            self.fail(
                path + (file_field,), f"a LoRA is a .safetensors file; got {entry.file}", "convert it to safetensors"
            )
            return None
        if entry.repo is not None:
            repo, _, revision = entry.repo.partition("@")
            return dataclasses.replace(
                entry_at, written=f"{entry.repo}:{entry.file}", repo=repo, revision=revision or "main", file=entry.file
            )
        try:
            on_disk = self.policy.resolve(entry.file, self.loaded.path.parent)
        except ValueError as exc:
            self.fail(path + (file_field,), str(exc))
            return None
        if not on_disk.is_file():
            self.fail(
                path + (file_field,),
                f"LoRA not found: {entry.file}",
                f"check the path; it is relative to {self.loaded.path.parent.name}/",
            )
            return None
        asset = Asset(entry.file, on_disk, cached_sha256(on_disk))
        return dataclasses.replace(entry_at, written=entry.file, asset=asset)

    def check_size(
        self, profile: ModelProfile, width: int, height: int, origin: FieldPath, written_by: str = ""
    ) -> None:
        rules = profile.constraints
        hint = f"use {size_hint(width, height, rules.size_multiple, rules.min_side, rules.max_side)}"
        if width % rules.size_multiple or height % rules.size_multiple:
            self.fail(
                origin,
                f"size {width}x{height}{written_by} is not a multiple of {rules.size_multiple} for model "
                f"`{profile.name}`",
                hint,
            )
        elif not (rules.min_side <= min(width, height) and max(width, height) <= rules.max_side):
            self.fail(
                origin,
                f"size {width}x{height}{written_by} is outside {rules.min_side}..{rules.max_side} pixels per side "
                f"for model `{profile.name}`",
                hint,
            )

    def resolve_transition(
        self, index: int, clip: Clip, fps: Fraction
    ) -> tuple[Literal["cut", "crossfade", "fade"], int]:
        spec = clip.transition
        if spec is None or spec.type == "cut":
            if spec is not None and spec.duration is not None and spec.duration.to_frames(fps) > 0:
                self.fail(
                    ("clips", index, "transition", "duration"),
                    "a cut has no duration",
                    "remove `duration`, or use crossfade or fade",
                )
            return "cut", 0
        if index == 0:
            self.fail(
                ("clips", index, "transition"),
                f"the first clip cannot enter with a {spec.type}: there is no clip before it",
                "remove the transition from the first clip",
            )
            return "cut", 0
        frames = (spec.duration or DEFAULT_TRANSITION).to_frames(fps)
        if frames < 1:
            self.fail(
                ("clips", index, "transition", "duration"),
                f"a {spec.type} needs at least one frame",
                "give it a duration such as 0.5s",
            )
        return spec.type, frames

    def resolve_condition(
        self, index: int, j: int, cond: Conditioning, fps: Fraction, frames: int
    ) -> ResolvedCondition | None:
        path = ("clips", index, "conditioning", j)
        at = self.frame_position(path + ("frame",), cond.frame, fps, frames)
        if cond.clip is not None:
            return (
                ResolvedCondition("clip", at, cond.strength, cond.frames or 1, clip=cond.clip)
                if at is not None
                else None
            )
        kind: Literal["image", "video"]
        if cond.image is not None:
            kind, written = "image", cond.image
        else:
            assert cond.video is not None  # a Conditioning has exactly one source, and it is not a clip here
            kind, written = "video", cond.video
        try:
            path_on_disk = self.policy.resolve(written, self.loaded.path.parent)
        except ValueError as exc:
            self.fail(path + (kind,), str(exc))
            return None
        if not path_on_disk.is_file():
            self.fail(
                path + (kind,),
                f"{kind} not found: {written}",
                f"check the path; it is relative to {self.loaded.path.parent.name}/",
            )
            return None
        try:
            if kind == "image":
                check_image(path_on_disk)
                count = 1
            else:
                available = check_video(path_on_disk, cond.frames)
                count = cond.frames or available
                if count > available:
                    self.fail(
                        path + ("frames",),
                        f"{written} has {available} frames; {count} requested",
                        f"use at most {available}",
                    )
                    return None
        except ValueError as exc:
            self.fail(path + (kind,), str(exc), "use a PNG/JPEG image or an mp4/mkv/webm video")
            return None
        if at is None:
            return None
        return ResolvedCondition(
            kind, at, cond.strength, count, asset=Asset(written, path_on_disk, cached_sha256(path_on_disk))
        )

    def frame_position(self, path: FieldPath, value: int | str, fps: Fraction, frames: int) -> int | None:
        if isinstance(value, str):
            try:
                position = parse_duration(value).to_frames(fps)
            except ValueError as exc:
                self.fail(path, str(exc), "write a frame index (0, 24, -1) or a time (2s)")
                return None
        else:
            position = value + frames if value < 0 else value
        if not 0 <= position < frames:
            self.fail(
                path,
                f"frame {value} is outside the clip (frames 0..{frames - 1})",
                f"use a frame between 0 and {frames - 1}, or -1 for the last",
            )
            return None
        return position

    def check_references(self, clip: ResolvedClip, by_id: dict[str, ResolvedClip]) -> None:
        base = ("clips", clip.index)
        if clip.continues is not None:
            source = self.referenced(base + ("continue",), clip, clip.continues, by_id)
            if source is not None:
                self.check_continuation(clip, source)
        for j, cond in enumerate(clip.conditions):
            if cond.clip is not None:  # a `clip` source
                source = self.referenced(base + ("conditioning", j, "clip"), clip, cond.clip, by_id)
                if source is not None and cond.frames > source.frames:
                    self.fail(
                        base + ("conditioning", j, "frames"),
                        f"clip `{source.id}` has {source.frames} frames; {cond.frames} requested",
                        f"use at most {source.frames}",
                    )

    def referenced(
        self, path: FieldPath, clip: ResolvedClip, target: str, by_id: dict[str, ResolvedClip]
    ) -> ResolvedClip | None:
        if target == clip.id:
            self.fail(path, f"clip `{clip.id}` refers to itself", "refer to another clip")
            return None
        if target not in by_id:
            close = difflib.get_close_matches(target, list(by_id), n=1)
            self.fail(
                path,
                f"unknown clip `{target}`",
                f"did you mean `{close[0]}`?" if close else f"clip ids: {', '.join(by_id)}",
            )
            return None
        return by_id[target]

    def check_continuation(self, clip: ResolvedClip, source: ResolvedClip) -> None:
        base = ("clips", clip.index)
        if (clip.width, clip.height, clip.fps) != (source.width, source.height, source.fps):
            self.fail(
                base + ("continue",),
                f"clip `{clip.id}` ({clip.width}x{clip.height} @ {float(clip.fps):g} fps) cannot continue `{source.id}` "
                f"({source.width}x{source.height} @ {float(source.fps):g} fps)",
                "give both clips the same size and fps",
            )
        elif clip.overlap > source.frames:
            longest = step_neighbours(source.frames, clip.profile.constraints.overlap_step)[0]
            self.fail(
                base + ("overlap",),
                f"overlap {clip.overlap} is longer than clip `{source.id}` ({source.frames} frames)",
                f"use overlap {longest}" if longest > 0 else f"lengthen `{source.id}`",
            )
        elif clip.transition_frames > clip.overlap:
            self.fail(
                base + ("transition", "duration"),
                f"a {clip.transition} into a continued clip blends over its {clip.overlap} context frames; it is {clip.transition_frames} frames",
                f"shorten the transition to at most {clip.overlap} frames, or raise `overlap`",
            )

    def check_drift_references(self, clips: list[ResolvedClip], written: list[Clip]) -> None:
        """`drift_control` matches a clip to its chain's first clip in the clip's latent space: the first clip
        must be made by the same backend (a `preview` animatic has no latents)."""
        for clip in clips:
            if not clip.knobs.get("drift_control") or clip.continues is None:
                continue
            root = clip
            while root.continues is not None:
                root = next(c for c in clips if c.id == root.continues)
            if root.profile.backend != clip.profile.backend:
                self.fail(
                    self.setting(clip.index, written[clip.index], "drift_control")[1] or ("clips", clip.index),
                    f"drift_control pulls clip `{clip.id}` towards the latents of its chain's first clip, `{root.id}`, "
                    f"but model `{root.profile.name}` makes `{root.id}` without {clip.profile.backend} latents",
                    f"remove drift_control, or make `{root.id}` with a model of the `{clip.profile.backend}` backend "
                    f"(like `{clip.profile.name}`)",
                )

    def check_cycles(self, clips: list[ResolvedClip]) -> None:
        graph = nx.DiGraph()
        for clip in clips:
            graph.add_node(clip.id)
            for target in clip.depends_on:
                if target != clip.id:  # a self-reference is reported already
                    graph.add_edge(clip.id, target)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return
        chain = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
        first = next(c for c in clips if c.id == cycle[0][0])
        field = "continue" if first.continues == cycle[0][1] else "conditioning"
        self.fail(
            ("clips", first.index, field),
            f"clips depend on each other in a cycle: {chain}",
            "break the cycle: a clip can only build on clips that do not build on it",
        )

    def check_timeline(self, clips: list[ResolvedClip], written: list[Clip]) -> None:
        first = clips[0]
        for clip in clips[1:]:
            if clip.fps != first.fps:
                self.fail(
                    ("clips", clip.index, "fps"),
                    f"all clips share one frame rate; this clip has {float(clip.fps):g} fps, `{first.id}` has {float(first.fps):g}",
                    "set `fps` once under `defaults`",
                )
        for previous, clip in itertools.pairwise(clips):
            path = ("clips", clip.index, "transition", "duration")
            if clip.transition_frames > previous.frames:
                self.fail(
                    path,
                    f"the {clip.transition} ({clip.transition_frames} frames) is longer than the clip before it, "
                    f"`{previous.id}` ({previous.frames} frames)",
                    "shorten the transition",
                )
            elif clip.transition_frames > clip.frames:
                self.fail(
                    path,
                    f"the {clip.transition} ({clip.transition_frames} frames) is longer than the clip itself ({clip.frames} frames)",
                    "shorten the transition",
                )
        if self.issues:
            return
        for clip, following in zip(clips, clips[1:] + [None], strict=True):
            t_in, t_out = clip.transition_frames, following.transition_frames if following else 0
            if t_in + t_out > clip.frames:
                length = "frames" if written[clip.index].frames is not None else "duration"
                self.fail(
                    ("clips", clip.index, length),
                    f"clip `{clip.id}` ({clip.frames} frames) is shorter than its transitions in and out "
                    f"({t_in} + {t_out} frames)",
                    "lengthen the clip or shorten the transitions",
                )

    def resolve_output(self, clips: list[ResolvedClip]) -> Path | None:
        """The output file: an .mp4 inside the project, writable, overwriting none of the scene's inputs."""
        written = self.spec.output.file or f"renders/{self.spec.name or self.loaded.path.stem}.mp4"
        try:
            path = self.policy.resolve(written, self.loaded.path.parent)
        except ValueError as exc:
            self.fail(("output", "file"), str(exc))
            return None
        if path.suffix.lower() != ".mp4":
            self.fail(
                ("output", "file"), f"the output must be an .mp4 file; got {written}", "end the file name with .mp4"
            )
            return None
        final = self.output_file(path) if self.output_file is not None else path  # --output, or tagged by overrides
        if final != path:
            path, written = final, str(final)
        inputs = [(spec_file, f"the spec file {spec_file.name}") for spec_file in self.loaded.files]
        inputs += [
            (c.asset.path, f"{c.asset.written} (clip `{clip.id}`)")
            for clip in clips
            for c in clip.conditions
            if c.asset
        ]
        inputs += [
            (lora.asset.path, f"{lora.asset.written} (clip `{clip.id}`)")
            for clip in clips
            for lora in clip.loras
            if lora.asset
        ]
        inputs += [
            (clip.control.video.path, f"{clip.control.video.written} (clip `{clip.id}`)")
            for clip in clips
            if clip.control is not None
        ]
        problem = output_problem(path, written, inputs)
        if problem is not None:
            self.fail(("output", "file"), *problem)
            return None
        return path


def resolve_timeline(
    loaded: LoadedSpec,
    policy: PathPolicy,
    profiles: dict[str, ModelProfile],
    model: str | None = None,
    size: tuple[int, int] | None = None,
    output_file: Callable[[Path], Path] | None = None,
) -> Timeline:
    """Decide every clip's settings and lengths (`model` and `size` override every clip's; `output_file`
    maps the spec's output to the file this render writes, which is checked like it); raises SpecError
    with every located issue.

    With an override the spec as written is checked too (its clips' own models, sizes and settings),
    so a spec that renders with `--model preview` or a smaller `--size` is ready for the real render.
    """
    resolver = _Resolver(loaded, policy, profiles, model, size, output_file)
    timeline, issues = resolver.resolve(), resolver.issues
    if model is not None or size is not None:
        as_written = _Resolver(loaded, policy, profiles, None, None)
        as_written.resolve()
        flags = " and ".join(flag for flag, value in (("--model", model), ("--size", size)) if value is not None)
        note = f" (the real render, without {flags}, would stop here)"
        issues = issues + [
            dataclasses.replace(i, message=i.message + note) for i in as_written.issues if i not in issues
        ]
    if issues:
        raise SpecError(list(dict.fromkeys(issues)))  # clips sharing a `defaults` value share its issue
    assert timeline is not None
    return timeline
