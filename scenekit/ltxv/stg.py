"""The perturbation of spatio-temporal guidance (STG) for diffusers' LTX-Video transformer.

Lightricks' dev configs guide by `stg (text - perturbed)`, where `perturbed` is the conditional prediction
with the self-attention of some blocks made to pass its values through (`stg_mode: attention_values`).
diffusers' attention-score skip hook does exactly that to the blocks' self-attention; `scenekit.ltxv.guidance`
runs the perturbed prediction and combines it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_HOOK = "scenekit_stg"


def _never(*args: Any, **kwargs: Any) -> Any:
    """The skip hook's replacement output, which it only uses when it skips the whole attention (never here)."""
    raise AssertionError("STG skips attention scores, not the attention")


@contextmanager
def perturbed_blocks(transformer: Any, blocks: list[int]) -> Iterator[None]:
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
