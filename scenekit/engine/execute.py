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


def _affinity(node: Node, last: Node | None, position: int) -> tuple[bool, bool, int]:
    """Sort key for ready nodes: same op as the last node first, then same weights, then spec order."""
    if last is None:
        return (False, False, position)
    return (node.op != last.op, node.profile != last.profile, position)


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
        """Produce the target's output; `expected_runs` sizes the progress display.

        Among the nodes that are ready, the next one shares the op and then the weights of the node
        that just ran when it can: all prompts are encoded while the text encoder is loaded, clips on
        one profile run before the next profile is loaded.
        """
        self._to_run = expected_runs
        order = {node.id: index for index, node in enumerate(self.graph.ordered())}
        pending = self.graph.uncached(self.cache, have=self.result.outputs)
        last: Node | None = None
        while pending:
            ready = [n for n in pending if not any(dep in pending for dep in self.graph.node(n).inputs.values())]
            node = self.graph.node(min(ready, key=lambda n: _affinity(self.graph.node(n), last, order[n])))
            inputs = self._inputs(node)
            if inputs is None:  # an input's cache entry turned out corrupt: it runs again first
                pending |= self.graph.uncached(self.cache, node.id, self.result.outputs)
                continue
            self.result.outputs[node.id] = self._run(node, inputs)
            pending.discard(node.id)
            last = node
        if self.graph.target not in self.result.outputs:
            folder = self.cache.open(self.graph.node(self.graph.target).key)
            if folder is None:
                return self.run(expected_runs)
            self.result.outputs[self.graph.target] = folder
        return self.result

    def _inputs(self, node: Node) -> dict[str, Path] | None:
        """Verified cache folders of a node's inputs; None (after dropping it) if one is corrupt."""
        inputs = {}
        for name, dep in node.inputs.items():
            folder = self.result.outputs.get(dep) or self.cache.open(self.graph.node(dep).key)
            if folder is None:
                return None
            inputs[name] = folder
        return inputs

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
