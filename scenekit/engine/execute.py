"""Run the nodes a plan needs, in dependency order, storing every output in the cache."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from scenekit.cache import CacheStore
from scenekit.engine.events import RenderEvents
from scenekit.errors import RenderCancelled, RenderError
from scenekit.graph.compile import RenderGraph
from scenekit.graph.nodes import Node
from scenekit.ops import get_operation


class Cancellation:
    """Asks a render to stop: before its next node, and inside the running node (at its next step)
    unless that node's output is still wanted (its key is in `keep`)."""

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._keep: frozenset[str] = frozenset()

    def cancel(self, keep: frozenset[str] = frozenset()) -> None:
        self._keep = keep
        self._requested.set()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def check_before(self, node: Node) -> None:
        if self._requested.is_set():
            raise RenderCancelled(f"cancelled before {node.id}")

    def check_during(self, node: Node) -> None:
        if self._requested.is_set() and node.key not in self._keep:
            raise RenderCancelled(f"cancelled during {node.id}")


@dataclass
class _Context:
    """What a running operation sees: its work folder, progress reporting and cancellation."""

    workdir: Path
    node: Node
    events: RenderEvents
    cancellation: Cancellation

    def step(self, done: int, total: int) -> None:
        self.cancellation.check_during(self.node)
        self.events.node_step(self.node, done, total)


@dataclass
class Execution:
    """Outputs and timings of a finished execution."""

    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class Executor:
    """Brings a graph's target into the cache, running only what is missing."""

    def __init__(self, render_graph: RenderGraph, cache: CacheStore, events: RenderEvents, cancellation: Cancellation | None = None):
        self.graph = render_graph
        self.cache = cache
        self.events = events
        self.cancellation = cancellation or Cancellation()
        self.result = Execution()
        self._to_run = 0
        self._started = 0

    def run(self, expected_runs: int) -> Execution:
        """Produce the target's output; `expected_runs` sizes the progress display."""
        self._to_run = expected_runs
        self.ensure(self.graph.target)
        return self.result

    def ensure(self, node_id: str) -> Path:
        """The cache folder of a node's output, computing it (and what it needs) if absent or corrupt."""
        if node_id in self.result.outputs:
            return self.result.outputs[node_id]
        node = self.graph.node(node_id)
        folder = self.cache.open(node.key)
        if folder is None:
            inputs = {name: self.ensure(dep) for name, dep in node.inputs.items()}
            folder = self._run(node, inputs)
        self.result.outputs[node_id] = folder
        return folder

    def _run(self, node: Node, inputs: dict[str, Path]) -> Path:
        self.cancellation.check_before(node)
        self._started += 1
        self._to_run = max(self._to_run, self._started)
        self.events.node_started(node, self._started, self._to_run)
        operation = get_operation(node.op)
        started = time.perf_counter()
        with self.cache.stage(node.key, op=node.op, node=node.id) as workdir:
            try:
                operation.run(node, inputs, _Context(workdir, node, self.events, self.cancellation))
            except (RenderCancelled, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise RenderError(f"{node.id} ({node.op}) failed: {exc}") from exc
        seconds = time.perf_counter() - started
        self.result.seconds[node.id] = seconds
        self.events.node_finished(node, seconds)
        folder = self.cache.open(node.key)
        if folder is None:
            raise RenderError(f"{node.id}: its cache entry could not be read back")
        return folder
