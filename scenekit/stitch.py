"""The stitch node: trims every clip to its timeline segment, applies transitions, encodes the mp4."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from scenekit.graph.nodes import Node
from scenekit.media.video import FRAMES_FILE, VideoWriter, iter_frames
from scenekit.ops import RunContext, register
from scenekit.preview.draw import annotate
from scenekit.timeline import Timeline
from scenekit.units import format_rate

STITCH = "stitch"
VIDEO_FILE = "video.mp4"


def stitch_node(timeline: Timeline, frames_nodes: list[str]) -> Node:
    """The node that joins every clip's frames into the output video."""
    clips = []
    for clip, start in zip(timeline.clips, timeline.starts(), strict=True):
        clips.append({
            "range": [clip.segment_start, clip.segment_start + clip.frames],
            "transition": {"type": clip.transition, "frames": clip.transition_frames},
            "label": clip.id if clip.profile.annotate else None,
            "start": start,
        })
    width, height = timeline.size
    params: dict[str, Any] = {
        "width": width, "height": height, "fps": format_rate(timeline.fps), "frames": timeline.total_frames,
        "crf": timeline.crf, "preset": timeline.preset, "clips": clips,
    }
    inputs = {f"clip{index}": node for index, node in enumerate(frames_nodes)}
    sources = {"clips": "clips (ids, lengths, transitions)", "crf": timeline.sources["output.crf"], "preset": timeline.sources["output.preset"]}
    return Node(STITCH, STITCH, params, inputs, sources=sources)


def blend(outgoing: np.ndarray, incoming: np.ndarray, index: int, length: int, kind: str) -> np.ndarray:
    """Frame `index` of a `length`-frame transition from `outgoing` to `incoming`."""
    alpha = (index + 1) / (length + 1)
    a, b = outgoing.astype(np.float32), incoming.astype(np.float32)
    if kind == "fade":
        mixed = a * (1 - 2 * alpha) if alpha < 0.5 else b * (2 * alpha - 1)
    else:
        mixed = a * (1 - alpha) + b * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def timeline_frames(params: dict[str, Any], inputs: dict[str, Path]) -> Iterator[np.ndarray]:
    """The output frames in order: segments trimmed, labelled, and blended where clips overlap."""
    fps = float(Fraction(params["fps"]))
    clips = params["clips"]
    tail: list[np.ndarray] = []
    for index, clip in enumerate(clips):
        start, stop = clip["range"]
        t_in = clip["transition"]["frames"]
        t_out = clips[index + 1]["transition"]["frames"] if index + 1 < len(clips) else 0
        length = stop - start
        next_tail = []
        for j, frame in enumerate(iter_frames(inputs[f"clip{index}"] / FRAMES_FILE, start, stop)):
            if clip["label"] is not None:
                frame = frame.copy()
                annotate(frame[None], first_timeline_frame=clip["start"] + j, fps=fps, label=clip["label"])
            if j < t_in:
                yield blend(tail[j], frame, j, t_in, clip["transition"]["type"])
            elif j >= length - t_out:
                next_tail.append(frame)
            else:
                yield frame
        tail = next_tail


@register(STITCH, version=1)
def stitch(node: Node, inputs: dict[str, Path], ctx: RunContext) -> None:
    """Write the final H.264 mp4 of the whole timeline."""
    params = node.params
    total = params["frames"]
    written = 0
    with VideoWriter(ctx.workdir / VIDEO_FILE, params["width"], params["height"], Fraction(params["fps"]),
                     lossless=False, crf=params["crf"], preset=params["preset"]) as writer:
        for frame in timeline_frames(params, inputs):
            writer.write(frame)
            written += 1
            ctx.step(written, total)
    if written != total:
        raise RuntimeError(f"stitch wrote {written} frames, expected {total}")
