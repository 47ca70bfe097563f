"""Conditioning sources of a clip as node parameters, and as frames when a node runs.

Both backends place sources the same way: `at` is a generated-frame index, a source clip's frames
are a generated-frame `range` of that clip's frames node, files are hashed into the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scenekit.graph.nodes import Node
from scenekit.media.probe import read_image
from scenekit.media.video import read_frames
from scenekit.node_media import output_frames
from scenekit.ops import NodeOutput
from scenekit.spec.assets import Asset
from scenekit.timeline import ResolvedClip, Timeline


def tail_range(clip: ResolvedClip, count: int) -> list[int]:
    """Generated-frame range [start, stop) of the last `count` timeline frames of `clip`."""
    stop = clip.segment_start + clip.frames
    return [stop - count, stop]


def condition_params(
    clip: ResolvedClip, timeline: Timeline, frames_of: Callable[[str], str]
) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, Asset]]:
    """The `conditions` parameter of a clip's node, with the inputs (`condN` -> node) and files it needs."""
    entries: list[dict[str, Any]] = []
    inputs: dict[str, str] = {}
    files: dict[str, Asset] = {}
    for index, cond in enumerate(clip.conditions):
        name = f"cond{index}"
        entry: dict[str, Any] = {
            "kind": cond.kind,
            "at": clip.segment_start + cond.at,
            "strength": cond.strength,
            "frames": cond.frames,
        }
        if cond.clip is not None:  # a `clip` source
            inputs[name] = frames_of(cond.clip)
            entry["range"] = tail_range(timeline.clip(cond.clip), cond.frames)
        else:
            assert cond.asset is not None  # image and video sources are files
            files[name] = cond.asset
        entries.append(entry)
    return entries, inputs, files


def condition_frames(node: Node, index: int, inputs: dict[str, NodeOutput]) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of the node's condition `index`, at their own size."""
    entry, name = node.params["conditions"][index], f"cond{index}"
    if entry["kind"] == "clip":
        return output_frames(inputs[name], *entry["range"])
    if entry["kind"] == "image":
        return read_image(node.files[name].path)[None]
    return read_frames(node.files[name].path, 0, entry["frames"])


def context_frames(node: Node, inputs: dict[str, NodeOutput]) -> np.ndarray | None:
    """The continuation context (the continued clip's tail), or None."""
    if node.params["context"] is None:
        return None
    return output_frames(inputs["context"], *node.params["context"])
