"""The `preview` backend: one node per clip that draws an animatic with no weights, on the CPU."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from scenekit.backends import ClipNodes, FramesOf
from scenekit.graph.nodes import Node
from scenekit.media.video import FRAMES_FILE, VideoWriter, read_frames
from scenekit.ops import RunContext, register
from scenekit.preview.draw import Condition, draw_clip, fit_image
from scenekit.timeline import ResolvedClip, Timeline
from scenekit.units import format_rate

GENERATE = "preview.generate"


def tail_range(clip: ResolvedClip, count: int) -> list[int]:
    """Generated-frame range [start, stop) of the last `count` timeline frames of `clip`."""
    stop = clip.segment_start + clip.frames
    return [stop - count, stop]


class PreviewBackend:
    """Expands a clip into a single `preview.generate` node."""

    def expand(self, clip: ResolvedClip, timeline: Timeline, frames_of: FramesOf) -> ClipNodes:
        inputs: dict[str, str] = {}
        files = {}
        conditions: list[dict[str, Any]] = []
        sources = dict(clip.sources)
        for index, cond in enumerate(clip.conditions):
            name = f"cond{index}"
            entry: dict[str, Any] = {"kind": cond.kind, "at": clip.segment_start + cond.at, "strength": cond.strength, "frames": cond.frames}
            if cond.kind == "clip":
                inputs[name] = frames_of(cond.clip)
                entry["range"] = tail_range(timeline.clip(cond.clip), cond.frames)
            else:
                files[name] = cond.asset
            conditions.append(entry)
            sources[f"conditions.{index}"] = f"clips[{clip.index}].conditioning[{index}]"
        params: dict[str, Any] = {
            "prompt": clip.prompt,
            "width": clip.width,
            "height": clip.height,
            "fps": format_rate(clip.fps),
            "seed": clip.seed,
            "frames": clip.generated_frames,
            "conditions": conditions,
            "context": None,
        }
        if clip.continues is not None:
            inputs["context"] = frames_of(clip.continues)
            params["context"] = tail_range(timeline.clip(clip.continues), clip.overlap)
        node = Node(f"{clip.id}/generate", GENERATE, params, inputs, files, clip.id, clip.profile.identity, sources)
        return ClipNodes([node], node.id)


@register(GENERATE, version=1)
def generate(node: Node, inputs: dict[str, Path], ctx: RunContext) -> None:
    """Draw the clip's frames and write them losslessly to the work folder."""
    params = node.params
    width, height, total = params["width"], params["height"], params["frames"]
    context = None
    if params["context"] is not None:
        context = read_frames(inputs["context"] / FRAMES_FILE, *params["context"])
    conditions = [_load_condition(node, index, entry, inputs, width, height) for index, entry in enumerate(params["conditions"])]
    fps = Fraction(params["fps"])
    frames = draw_clip(
        prompt=params["prompt"], width=width, height=height, fps=float(fps), num_frames=total, seed=params["seed"],
        context=context, conditions=conditions, on_frame=lambda i: ctx.step(i + 1, total + 1),
    )
    with VideoWriter(ctx.workdir / FRAMES_FILE, width, height, fps, lossless=True) as writer:
        for frame in frames:
            writer.write(frame)
    ctx.step(total + 1, total + 1)


def _load_condition(node: Node, index: int, entry: dict[str, Any], inputs: dict[str, Path], width: int, height: int) -> Condition:
    name = f"cond{index}"
    if entry["kind"] == "clip":
        frames = read_frames(inputs[name] / FRAMES_FILE, *entry["range"])
    elif entry["kind"] == "image":
        with Image.open(node.files[name].path) as image:
            frames = np.asarray(image.convert("RGB"))[None]
    else:
        frames = read_frames(node.files[name].path, 0, entry["frames"])
    fitted = np.stack([fit_image(frame, width, height) for frame in frames])
    return Condition(frames=fitted, at=entry["at"], strength=entry["strength"])
