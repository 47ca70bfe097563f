"""The prompt node every text-conditioned family starts a clip with: the clip's prompt (and its negative
prompt when the clip's sampling uses CFG) encoded by the text encoder in the weights folder."""

from __future__ import annotations

from scenekit.graph.nodes import Node
from scenekit.timeline import ResolvedClip
from scenekit.weights import WeightsSource


def prompt_node(
    clip: ResolvedClip,
    op: str,
    weights: WeightsSource,
    *,
    negative_prompt: str | None,
    max_sequence_length: int,
    precision: str,
    encoder: str,
) -> Node:
    """`{clip}/prompt` running `op`; `negative_prompt` None when no stage uses CFG (then it is not encoded);
    `encoder` names the text encoder in progress and plans."""
    params = {
        "prompt": clip.prompt,
        "negative_prompt": negative_prompt,
        "max_sequence_length": max_sequence_length,
        "precision": precision,
    }
    sources = {
        "prompt": clip.sources["prompt"],
        "negative_prompt": clip.sources.get("negative_prompt", "negative_prompt"),
    }
    return Node(
        f"{clip.id}/prompt",
        op,
        params,
        {},
        {},
        clip.id,
        weights.identity("text_encoder", "tokenizer"),
        sources,
        meta={"weights": str(weights.folder), "model": f"{encoder} in {weights.folder}"},
    )
