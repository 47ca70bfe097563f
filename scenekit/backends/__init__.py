"""Backends turn a resolved clip into DAG nodes; a profile names the backend it uses."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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


#: backend name -> (module, class), and the prefix and module of its operations: one line per model
#: family, imported only when a clip of the family is expanded or one of its nodes runs
_FAMILIES = {
    "preview": ("scenekit.backends.preview", "PreviewBackend", "preview.", "scenekit.backends.preview"),
    "ltx2": ("scenekit.backends.ltx2", "Ltx2Backend", "ltx2.", "scenekit.ltx2.ops"),
}
for _module, _class, _prefix, _operations in _FAMILIES.values():
    operations_in(_prefix, _operations)


def get_backend(name: str) -> Backend:
    """The backend registered under `name`."""
    if name not in _FAMILIES:
        raise KeyError(f"unknown backend `{name}`")
    module, class_name, _, _ = _FAMILIES[name]
    backend: Backend = getattr(importlib.import_module(module), class_name)()
    return backend
