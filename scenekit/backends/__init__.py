"""Backends turn a resolved clip into DAG nodes; a profile names the backend it uses."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from scenekit.graph.nodes import Node
from scenekit.ops import operations_in
from scenekit.timeline import ResolvedClip, Timeline


@dataclass
class ClipNodes:
    """The nodes of one clip and the id of the node whose output is its generated frames."""

    nodes: list[Node]
    frames: str


FramesOf = Callable[[str], str]


class Backend(Protocol):
    """Expands clips of the profiles that name it."""

    def expand(self, clip: ResolvedClip, timeline: Timeline, frames_of: FramesOf) -> ClipNodes:
        """Nodes for `clip`; `frames_of(clip_id)` gives the frames node of another clip."""

    def machine_problem(self, clip: ResolvedClip, timeline: Timeline) -> str | None:
        """Why this machine cannot render `clip` (its hardware, missing weights), or None."""


@dataclass(frozen=True)
class Family:
    """A model family: the backend that expands its clips (`module:Class`), the module that registers
    its operations (named `PREFIX...`) and, for families with weights, the function that writes tiny
    random weights for one of its profiles in the real layout (`module:function(folder, profile=NAME)`) and
    the one that says what a profile downloads (`module:function(profile) -> scenekit.weights.ProfileWeights`,
    for `scenekit profiles` and `scenekit fetch`). Each is imported only when used, so a family's heavy
    imports cost nothing to specs that do not use it."""

    backend: str
    operations_prefix: str
    operations_module: str
    tiny_weights: str | None = None
    weights: str | None = None


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, family: Family) -> None:
    """Make profiles whose `backend:` is `name` render with `family`: the one place a family is added."""
    _FAMILIES[name] = family
    operations_in(family.operations_prefix, family.operations_module)


register_family("preview", Family("scenekit.backends.preview:PreviewBackend", "preview.", "scenekit.backends.preview"))
register_family(
    "ltx2",
    Family(
        "scenekit.backends.ltx2:Ltx2Backend",
        "ltx2.",
        "scenekit.ltx2.ops",
        tiny_weights="scenekit.ltx2.tiny:build_tiny_profile_weights",
        weights="scenekit.ltx2.settings:profile_weights",
    ),
)
register_family(
    "ltxv",
    Family(
        "scenekit.backends.ltxv:LtxvBackend",
        "ltxv.",
        "scenekit.ltxv.ops",
        tiny_weights="scenekit.ltxv.tiny:build_tiny_profile_weights",
        weights="scenekit.ltxv.settings:profile_weights",
    ),
)


class UnknownBackend(LookupError):
    """A profile names a backend no family registered."""


def get_family(name: str) -> Family:
    """The family registered under `name`; raises UnknownBackend, saying which exist."""
    if name not in _FAMILIES:
        raise UnknownBackend(
            f"its profile names the backend `{name}`, which is not one of {', '.join(sorted(_FAMILIES))}"
        )
    return _FAMILIES[name]


def load(reference: str) -> Any:
    """The object a `module:name` reference names."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


def get_backend(name: str) -> Backend:
    """The backend of the family registered under `name`; raises UnknownBackend, saying which exist."""
    backend: Backend = load(get_family(name).backend)()
    return backend
