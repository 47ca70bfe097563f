"""Specs built for `POST /generate` (one clip) and `POST /stitch` (earlier renders' clips in order), so that
they render through the cache and get a manifest like any spec. Paths in a built spec are written relative to
`base`, the folder the spec is saved in."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from scenekit.timeline import ResolvedClip, Timeline
from scenekit.units import format_rate


def to_yaml(spec: dict[str, Any]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096  # a long path stays on its key's line
    buffer = io.StringIO()
    yaml.dump(spec, buffer)
    return buffer.getvalue()


def generate_spec(
    *,
    name: str,
    prompt: str,
    duration: str,
    base: Path,
    project: Path,
    model: str | None = None,
    size: str | None = None,
    fps: str | None = None,
    seed: int | None = None,
    image: Path | None = None,
) -> dict[str, Any]:
    """One clip, optionally conditioned on an image (e.g. an upload) at its first frame."""
    defaults = {k: v for k, v in (("model", model), ("size", size), ("fps", fps), ("seed", seed)) if v is not None}
    clip: dict[str, Any] = {"id": "clip", "prompt": prompt, "duration": duration}
    if image is not None:
        clip["conditioning"] = [{"image": _relative(image, base), "frame": 0}]
    spec: dict[str, Any] = {"scenekit": 1, "name": name}
    if defaults:
        spec["defaults"] = defaults
    spec["clips"] = [clip]
    spec["output"] = {"file": _relative(project / "renders" / f"{name}.mp4", base)}
    return spec


def stitch_spec(
    *, name: str, timelines: list[Timeline], transition: str, transition_duration: str, base: Path, project: Path
) -> dict[str, Any]:
    """The resolved clips of several renders one after the other, each render after the first entering with
    `transition`. Each clip keeps its model, size, fps, seed, frames and settings, so its frames come from the
    cache; clip ids are kept unless two renders share one (then the later gets its render's number). The
    output is encoded as the first render's (`crf`, `preset`)."""
    clips: list[dict[str, Any]] = []
    used: set[str] = set()
    for number, timeline in enumerate(timelines, start=1):
        ids = {clip.id: clip.id if clip.id not in used else f"r{number}-{clip.id}"[:64] for clip in timeline.clips}
        used.update(ids.values())
        for position, clip in enumerate(timeline.clips):
            entry = _clip_entry(clip, ids, base)
            if position == 0 and number > 1 and transition != "cut":
                entry["transition"] = {"type": transition, "duration": transition_duration}
            elif position == 0:
                entry.pop("transition", None)
            clips.append(entry)
    return {
        "scenekit": 1,
        "name": name,
        "clips": clips,
        "output": {
            "file": _relative(project / "renders" / f"{name}.mp4", base),
            "crf": timelines[0].crf,
            "preset": timelines[0].preset,
        },
    }


def _clip_entry(clip: ResolvedClip, ids: dict[str, str], base: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": ids[clip.id],
        "prompt": clip.prompt,
        "model": clip.profile.name,
        "size": f"{clip.width}x{clip.height}",
        "fps": format_rate(clip.fps),
        "seed": clip.seed,
        "frames": clip.frames,
        **clip.knobs,
    }
    if clip.continues:
        entry["continue"] = ids[clip.continues]
        entry["overlap"] = clip.overlap
    conditioning = []
    for condition in clip.conditions:
        item: dict[str, Any] = {"frame": condition.at, "strength": condition.strength}
        if condition.kind == "clip" and condition.clip is not None:
            item["clip"] = ids[condition.clip]
            item["frames"] = condition.frames
        elif condition.asset is not None:
            item[condition.kind] = _relative(condition.asset.path, base)
            if condition.kind == "video":
                item["frames"] = condition.frames
        conditioning.append(item)
    if conditioning:
        entry["conditioning"] = conditioning
    if clip.transition != "cut":
        entry["transition"] = {"type": clip.transition, "duration": f"{clip.transition_frames}f"}
    return entry


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()
