"""Loading a checkpoint's tensors into a model built from its configuration: every tensor must fit."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def load_exactly(
    model: Any, state: dict[str, Any], what: str, *, assign: bool = True, unset: Collection[str] = ()
) -> Any:
    """`model` (in eval mode) with `state` loaded into it; raises ValueError `<what> (missing ..., unexpected ...)`
    when a tensor of the model is missing (but those in `unset`: buffers that are not learned), one of `state`
    has no place in it or another shape than its place. `assign` keeps `state`'s tensors (a model built on the
    meta device)."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as exc:  # a tensor of another shape than the configuration gives
        raise ValueError(f"{what} ({exc})") from None
    missing = [key for key in missing if key not in unset]
    if missing or unexpected:
        raise ValueError(f"{what} (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    return model.eval()
