"""The `preview` backend: one node per clip that draws an animatic with no weights, on the CPU."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from scenekit.backends import ClipNodes, FramesOf
from scenekit.conditioning import (
    condition_frames,
    condition_params,
    context_frames,
    tail_range,
)
from scenekit.graph.nodes import Node
from scenekit.node_media import keep_frames
from scenekit.ops import NodeOutput, RunContext, register
from scenekit.preview.draw import Condition, draw_clip, fit_image
from scenekit.timeline import ResolvedClip, Timeline
from scenekit.units import format_rate

GENERATE = "preview.generate"


class PreviewBackend:
    """Expands a clip into a single `preview.generate` node."""

    def expand(self, clip: ResolvedClip, timeline: Timeline, frames_of: FramesOf) -> ClipNodes:
        conditions, inputs, files = condition_params(clip, timeline, frames_of)
        sources = {
            "prompt": clip.sources["prompt"],
            "width": clip.sources["size"],
            "height": clip.sources["size"],
            "fps": clip.sources["fps"],
            "seed": clip.sources["seed"],
            "frames": clip.sources["frames"],
            "conditions": f"clips[{clip.index}].conditioning",
            "context": clip.sources.get("overlap", "continue"),
        }
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

    def machine_problem(self, clip: ResolvedClip, timeline: Timeline) -> str | None:
        """None: the preview model draws on any CPU and needs no weights."""
        return None


@register(GENERATE, version=2)
def generate(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Draw the clip's frames; they are kept for later nodes and stored losslessly."""
    params = node.params
    width, height, total = params["width"], params["height"], params["frames"]
    conditions = [
        Condition(
            frames=np.stack([fit_image(f, width, height) for f in condition_frames(node, index, inputs)]),
            at=entry["at"],
            strength=entry["strength"],
        )
        for index, entry in enumerate(params["conditions"])
    ]
    fps = Fraction(params["fps"])
    frames = draw_clip(
        prompt=params["prompt"],
        width=width,
        height=height,
        fps=float(fps),
        num_frames=total,
        seed=params["seed"],
        context=context_frames(node, inputs),
        conditions=conditions,
        on_frame=lambda i: ctx.step(i + 1, total),
    )
    keep_frames(ctx, frames, fps)
