"""Spatio-temporal guidance (STG) for diffusers' `LTXConditionPipeline`, which has none.

Lightricks' dev configs guide each step by `noise = uncond + cfg (text - uncond) + stg (text - perturbed)`,
where `perturbed` is the conditional prediction with the self-attention of some blocks made to pass its
values through (`stg_mode: attention_values`). A forward hook on the transformer adds that term: after
each forward it runs the conditional half again with those blocks perturbed (diffusers' attention-score
skip hook, on the blocks' self-attention only) and moves the conditional prediction by
`stg / cfg (text - perturbed)`, so the pipeline's own CFG step yields the sum above.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

_HOOK = "scenekit_stg"


@dataclass
class StgState:
    """This step's STG scale and blocks, and its CFG scale (1: no unconditional half); set between steps."""

    scale: float = 0.0
    blocks: list[int] = field(default_factory=list)
    cfg: float = 1.0
    batched: bool = False
    """Whether the pipeline batches the unconditional prediction with the conditional one."""


def _never(*args: Any, **kwargs: Any) -> Any:
    """The skip hook's replacement output, which it only uses when it skips the whole attention (never here)."""
    raise AssertionError("STG skips attention scores, not the attention")


@contextmanager
def _perturbed(transformer: Any, blocks: list[int]) -> Iterator[None]:
    """The blocks' self-attention passes its values through while inside."""
    from diffusers.hooks.hooks import HookRegistry
    from diffusers.hooks.layer_skip import AttentionProcessorSkipHook

    layers = transformer.transformer_blocks
    bad = [b for b in blocks if not 0 <= b < len(layers)]
    if bad:
        raise ValueError(f"STG blocks {bad} out of range for a transformer with {len(layers)} blocks")
    registries = []
    for index in sorted(set(blocks)):
        registry = HookRegistry.check_if_exists_or_initialize(layers[index].attn1)
        registry.register_hook(AttentionProcessorSkipHook(_never, skip_attention_scores=True), _HOOK)
        registries.append(registry)
    try:
        yield
    finally:
        for registry in registries:
            registry.remove_hook(_HOOK, recurse=False)


@contextmanager
def spatio_temporal_guidance(transformer: Any, state: StgState) -> Iterator[None]:
    """Add STG to every forward of `transformer` while inside, as `state` says at that step."""
    busy = False

    def hook(module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        nonlocal busy
        if busy or state.scale <= 0 or not state.blocks:
            return output
        prediction = output[0]
        count = prediction.shape[0]
        half = count // 2 if state.batched else 0
        conditional = {
            key: value[half:] if isinstance(value, torch.Tensor) and value.shape[:1] == (count,) else value
            for key, value in kwargs.items()
        }
        busy = True
        try:  # its own step-cache context: the perturbed pass is not the next step of the others
            with _perturbed(module, state.blocks), module.cache_context("stg_perturbed"):
                perturbed = module(*args, **conditional)[0]
        finally:
            busy = False
        text = prediction[half:]
        moved = prediction.clone()
        moved[half:] = text + state.scale / max(state.cfg, 1.0) * (text - perturbed)
        return (moved, *output[1:])

    handle = transformer.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
