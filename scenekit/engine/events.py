"""Render events: what the executor reports as it goes (progress bars, logs, later a UI)."""

from __future__ import annotations

from typing import Protocol

from scenekit.engine.plan import PlannedNode
from scenekit.graph.nodes import Node


class RenderEvents(Protocol):
    """Receives progress from a render."""

    def planned(self, plan: list[PlannedNode]) -> None:
        """The plan is known; nodes with status `run` will start in order."""

    def node_started(self, node: Node, position: int, total: int) -> None:
        """Node `position` (1-based) of the `total` that run has started."""

    def node_step(self, node: Node, done: int, total: int) -> None:
        """The running node finished `done` of its `total` steps."""

    def node_finished(self, node: Node, seconds: float) -> None:
        """The running node's output is in the cache."""

    def closed(self) -> None:
        """The render ended: finished, failed or cancelled."""


class PlacementEvents(Protocol):
    """Optionally also implemented by RenderEvents: executors that run nodes elsewhere (Ray) say where."""

    def node_placed(self, node: Node, where: str) -> None:
        """The node just started runs on `where` (e.g. `host GPU 3`)."""


class SilentEvents:
    """Ignores every event."""

    def planned(self, plan: list[PlannedNode]) -> None:
        pass

    def node_started(self, node: Node, position: int, total: int) -> None:
        pass

    def node_step(self, node: Node, done: int, total: int) -> None:
        pass

    def node_finished(self, node: Node, seconds: float) -> None:
        pass

    def closed(self) -> None:
        pass
