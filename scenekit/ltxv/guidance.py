"""How a step of an LTX-Video pass combines its predictions, as Lightricks' pipeline does
(`ltx_video/pipelines/pipeline_ltx_video.py`), on diffusers' `LTXConditionPipeline`, which has only plain CFG.

Per step, with `uncond`, `text` and `perturbed` (the text prediction with STG's blocks perturbed):

    uncond = alpha * uncond, alpha = <text, uncond> / (||uncond||^2 + 1e-8)   # CFG-star rescale, CFG on only
    pred = uncond + cfg (text - uncond)      (CFG on: cfg > 1)   else   text
    pred = pred + stg (text - perturbed)                                     # STG on: stg > 0
    pred = pred * (rescale * std(text) / std(pred) + 1 - rescale)            # STG on and rescale != 1

The dot product, norm and standard deviations are per sample, over all its tokens and channels. A forward
hook on the transformer computes `pred` and returns it in place of both halves of the pipeline's batch, so
the pipeline's own step `uncond + cfg (text - uncond)` yields `pred` as it is (the pipeline's
`guidance_rescale` stays 0). A step without CFG or STG leaves the transformer's output untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

CFG_STAR_EPSILON = 1e-8


@dataclass
class GuidanceState:
    """This step's guidance (set between steps): CFG, STG scale and blocks, std rescale, CFG-star."""

    cfg: float = 1.0
    stg: float = 0.0
    blocks: list[int] = field(default_factory=list)
    rescale: float = 0.0
    cfg_star: bool = False
    batched: bool = False
    """Whether the pipeline batches the unconditional prediction with the conditional one."""


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A `(batch, 1)` statistic shaped to broadcast over `like`."""
    return values.view(like.shape[0], *([1] * (like.ndim - 1)))


def cfg_star(text: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
    """`uncond` scaled by the projection of `text` onto it, per sample (CFG-zero-star's rescale)."""
    positive, negative = text.reshape(text.shape[0], -1), uncond.reshape(uncond.shape[0], -1)
    dot = torch.sum(positive * negative, dim=1, keepdim=True)
    squared_norm = torch.sum(negative**2, dim=1, keepdim=True) + CFG_STAR_EPSILON
    return _per_sample(dot / squared_norm, uncond) * uncond


def combine(
    text: torch.Tensor,
    uncond: torch.Tensor | None,
    perturbed: torch.Tensor | None,
    *,
    cfg: float,
    stg: float,
    rescale: float,
    cfg_star_rescale: bool,
) -> torch.Tensor:
    """The guided prediction of a step (the module docstring's formulas, in that order)."""
    if uncond is not None and cfg > 1.0:
        if cfg_star_rescale:
            uncond = cfg_star(text, uncond)
        pred = uncond + cfg * (text - uncond)
    else:
        pred = text
    if perturbed is not None and stg > 0.0:
        pred = pred + stg * (text - perturbed)
        if rescale != 1.0:
            batch = text.shape[0]
            factor = text.reshape(batch, -1).std(dim=1, keepdim=True) / pred.reshape(batch, -1).std(dim=1, keepdim=True)
            pred = pred * _per_sample(rescale * factor + (1 - rescale), pred)
    return pred


def unconditional_unused(state: GuidanceState) -> bool:
    """Whether this step's batch carries an unconditional half that its guidance does not use (CFG off)."""
    return state.batched and state.cfg <= 1.0


def _rows(kwargs: dict[str, Any], count: int, start: int) -> dict[str, Any]:
    """`kwargs` with every tensor of `count` rows (the pipeline's batch) cut to its rows from `start` on."""
    return {
        key: value[start:] if isinstance(value, torch.Tensor) and value.shape[:1] == (count,) else value
        for key, value in kwargs.items()
    }


@contextmanager
def guided_steps(transformer: Any, state: GuidanceState) -> Iterator[None]:
    """Every forward of `transformer` returns the guided prediction `state` asks for while inside.

    A batched step whose CFG is off (a schedule turns it on at other steps) computes only the text half and
    hands it back as both halves: the unconditional prediction would be unused."""
    from scenekit.ltxv.stg import perturbed_blocks

    busy = False
    forward = transformer.forward
    own_forward = "forward" in vars(transformer)  # diffusers' hooks set one; else the class's is used

    def text_only(*args: Any, **kwargs: Any) -> Any:
        count = kwargs["hidden_states"].shape[0]
        if busy or not unconditional_unused(state):
            return forward(*args, **kwargs)
        with transformer.cache_context("text_only"):  # a step cache keeps this batch size's state apart
            output = forward(*args, **_rows(kwargs, count, count // 2))
        return (torch.cat([output[0], output[0]]), *output[1:])

    def hook(module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        nonlocal busy
        stg = state.stg > 0 and bool(state.blocks)
        if busy or not (stg or state.batched):
            return output
        prediction = output[0]
        count = prediction.shape[0]
        half = count // 2 if state.batched else 0
        perturbed = None
        if stg:
            busy = True
            try:  # its own step-cache context: the perturbed pass is not the next step of the others
                with perturbed_blocks(module, state.blocks), module.cache_context("stg_perturbed"):
                    perturbed = module(*args, **_rows(kwargs, count, half))[0]
            finally:
                busy = False
        pred = combine(
            prediction[half:],
            prediction[:half] if state.batched else None,
            perturbed,
            cfg=state.cfg,
            stg=state.stg if stg else 0.0,
            rescale=state.rescale,
            cfg_star_rescale=state.cfg_star,
        )
        return (torch.cat([pred, pred]) if state.batched else pred, *output[1:])

    handle = transformer.register_forward_hook(hook, with_kwargs=True)
    transformer.forward = text_only
    try:
        yield
    finally:
        handle.remove()
        if own_forward:
            transformer.forward = forward
        else:
            del transformer.forward
