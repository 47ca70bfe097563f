"""Backends turn a resolved clip into DAG nodes; a profile names the backend it uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from scenekit.graph.nodes import Node
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


def get_backend(name: str) -> Backend:
    """The backend registered under `name`."""
    if name == "preview":
        from scenekit.backends.preview import PreviewBackend

        return PreviewBackend()
    if name == "ltx2":
        from scenekit.backends.ltx2 import Ltx2Backend

        return Ltx2Backend()
    raise KeyError(f"unknown backend `{name}`")
