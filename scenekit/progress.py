"""Rich progress bars for a render: overall nodes, and each running node's steps with ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from scenekit.engine.plan import PlannedNode
from scenekit.graph.nodes import Node


class RichProgress:
    """RenderEvents shown as two progress bars (shown from `planned` until `closed`)."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.overall: TaskID | None = None
        self.running: dict[str, TaskID] = {}  # a background node (a segment encode) runs beside the main one

    def planned(self, plan: list[PlannedNode]) -> None:
        runs = sum(1 for p in plan if p.status == "run")
        cached = len(plan) - runs
        self.console.print(f"{len(plan)} nodes: {runs} to run, {cached} cached", markup=False, highlight=False)
        self.progress.start()
        self.overall = self.progress.add_task("render", total=max(runs, 1), completed=0 if runs else 1)

    def node_started(self, node: Node, position: int, total: int) -> None:
        if self.overall is not None:
            self.progress.update(self.overall, total=total, description=f"render: node {position}/{total}")
        self.running[node.id] = self.progress.add_task(node.id, total=None)

    def node_placed(self, node: Node, where: str) -> None:
        """The running node runs on `where` (a Ray worker: host and GPU)."""
        if node.id in self.running:
            self.progress.update(self.running[node.id], description=f"{node.id} [{where}]")

    def node_step(self, node: Node, done: int, total: int) -> None:
        if node.id in self.running:
            self.progress.update(self.running[node.id], completed=done, total=total)

    def node_finished(self, node: Node, seconds: float) -> None:
        if node.id in self.running:
            self.progress.remove_task(self.running.pop(node.id))
        if self.overall is not None:
            self.progress.advance(self.overall)
        self.console.print(f"  done {node.id} in {seconds:.2f}s", markup=False, highlight=False)

    def closed(self) -> None:
        self.progress.stop()
