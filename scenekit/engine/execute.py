"""Run the nodes a plan needs, in dependency order, storing every output in the cache."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from scenekit.cache import CacheStore, StagedEntry
from scenekit.engine.events import RenderEvents
from scenekit.engine.writer import DeferredWrite, EntryWriter
from scenekit.errors import RenderCancelled, RenderError
from scenekit.graph.compile import RenderGraph
from scenekit.graph.nodes import Node
from scenekit.ops import NodeOutput, get_operation
from scenekit.runtime.speed import Machine

MAX_CORRUPT_RETRIES = 2
"""How many times a node runs again because its entry came back corrupt before the render fails."""


class CorruptEntries:
    """How often each node's cache entry came back corrupt in one render (it is recomputed each time)."""

    def __init__(self, cache: CacheStore) -> None:
        self.cache = cache
        self._seen: Counter[str] = Counter()

    def count(self, node: Node) -> None:
        """Note that `node`'s entry came back corrupt; a RenderError once it did so too often."""
        self._seen[node.id] += 1
        if self._seen[node.id] > MAX_CORRUPT_RETRIES:
            raise RenderError(
                f"{node.id}: its cache entry {self.cache.entry_dir(node.key)} is still corrupt after "
                f"{MAX_CORRUPT_RETRIES} attempts to recompute it (is the cache's disk failing, or read-only?)"
            )


class Cancellation:
    """Asks a render to stop: before its next node, and inside the running node (at its next step)
    unless that node's output is still wanted (its key is in `keep`)."""

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._keep: frozenset[str] = frozenset()

    def cancel(self, keep: frozenset[str] = frozenset()) -> None:
        self._keep = keep
        self._requested.set()

    def check_before(self, node: Node) -> None:
        if self._requested.is_set():
            raise RenderCancelled(f"cancelled before {node.id}")

    def check_during(self, node: Node) -> None:
        if self._requested.is_set() and node.key not in self._keep:
            raise RenderCancelled(f"cancelled during {node.id}")

    @property
    def requested(self) -> bool:
        """Whether `cancel` was called."""
        return self._requested.is_set()

    @property
    def keep(self) -> frozenset[str]:
        """The keys of running nodes that finish anyway."""
        return self._keep


@dataclass
class NodeContext:
    """What a running operation sees: its work folder, progress reporting, cancellation, and
    the outputs it keeps in memory (written to the entry in the background)."""

    workdir: Path
    node: Node
    events: RenderEvents
    cancellation: Cancellation
    held: dict[str, Any] = field(default_factory=dict)
    writes: list[DeferredWrite] = field(default_factory=list)

    def step(self, done: int, total: int) -> None:
        self.cancellation.check_during(self.node)
        self.events.node_step(self.node, done, total)

    def keep(self, name: str, value: Any, write: Callable[[Path], None]) -> None:
        self.held[name] = value
        self.writes.append((name, write))


@dataclass
class Execution:
    """The target's cache folder, the seconds of every node that ran and where each ran."""

    output: Path
    seconds: dict[str, float] = field(default_factory=dict)
    placements: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Node id -> where it ran (`executor`, `host`, and for Ray the worker and its GPUs)."""


@dataclass(frozen=True)
class ExecutorChoice:
    """Which executor runs a render's nodes: `local` (this process) or `ray` (GPU actors of a Ray cluster)."""

    name: str = "local"
    address: str | None = None
    """The Ray cluster to join (`ray://head:10001`, `auto`); None starts a local one on this machine's GPUs."""
    gpus_per_worker: int = 1
    """GPUs each Ray worker holds, a clip's sampling stages running across them (`--gpus-per-clip`)."""


EXECUTORS = ("local", "ray")


class GraphExecutor(Protocol):
    """Brings a graph's target into the cache (`Executor` here; `scenekit.engine.ray_executor.RayExecutor`)."""

    def run(self, expected_runs: int) -> Execution: ...


def make_executor(
    choice: ExecutorChoice,
    render_graph: RenderGraph,
    cache: CacheStore,
    events: RenderEvents,
    cancellation: Cancellation | None = None,
    gpu_gb: dict[str, float] | None = None,
) -> GraphExecutor:
    """The executor `choice` names; `gpu_gb` is the GPU memory each clip's profile needs (for Ray's placement)."""
    if choice.name == "ray":
        from scenekit.engine.ray_executor import RayExecutor  # Ray is an optional extra: imported only when chosen

        return RayExecutor(
            render_graph,
            cache,
            events,
            cancellation,
            address=choice.address,
            gpus_per_worker=choice.gpus_per_worker,
            gpu_gb=gpu_gb or {},
        )
    return Executor(render_graph, cache, events, cancellation)


def executor_machine(choice: ExecutorChoice) -> Machine | None:
    """The machine the executor `choice` runs model nodes on when it is not this process's: for Ray, the
    cluster's GPUs (joining or starting it); None for the local executor."""
    if choice.name == "ray":
        from scenekit.engine.ray_executor import worker_pool

        return worker_pool(choice.address, gpus_per_worker=choice.gpus_per_worker).machine()
    return None


def run_operation(node: Node, inputs: dict[str, NodeOutput], context: NodeContext) -> float:
    """Run a node's operation in `context`'s work folder; returns its seconds. Failures become RenderError
    naming the node (cancellation and interrupts pass through); the caller discards the work folder."""
    operation = get_operation(node.op)
    started = time.perf_counter()
    try:
        operation.run(node, inputs, context)
    except Exception as exc:
        if isinstance(exc, RenderCancelled):
            raise
        raise RenderError(f"{node.id} ({node.op}) failed: {exc}") from exc
    return time.perf_counter() - started


HOST = socket.gethostname()


def _affinity(node: Node, loaded: str | None, position: int) -> tuple[bool, int]:
    """Sort key for ready nodes: first those that need no large model other than the one loaded last
    (`meta["model"]`), then spec order."""
    model = node.meta.get("model")
    return (model is not None and model != loaded, position)


class Executor:
    """Brings a graph's target into the cache, running only what is missing.

    A node's outputs go to the next nodes in memory while its cache entry is written in the
    background; `run` returns once every entry is committed.
    """

    def __init__(
        self,
        render_graph: RenderGraph,
        cache: CacheStore,
        events: RenderEvents,
        cancellation: Cancellation | None = None,
    ):
        self.graph = render_graph
        self.cache = cache
        self.events = events
        self.cancellation = cancellation or Cancellation()
        self.seconds: dict[str, float] = {}  # of every node that ran
        self.placements: dict[str, dict[str, Any]] = {}
        self._outputs: dict[str, NodeOutput] = {}
        self._corrupt = CorruptEntries(cache)
        self._to_run = 0
        self._started = 0

    def run(self, expected_runs: int) -> Execution:
        """Produce the target's output; `expected_runs` sizes the progress display.

        Among the nodes that are ready, the next one uses the large model loaded last when it can: all
        prompts are encoded while the text encoder is loaded, and the clips of one profile run before the
        next profile's transformer is loaded (so a model pool that has to evict loads each one once).
        """
        self._to_run = expected_runs
        target = self.graph.node(self.graph.target)
        while True:
            writer = EntryWriter()
            try:
                self._run_pending(writer)
                writer.drain()
            finally:
                writer.close()
            output = self._outputs.get(target.id)
            folder = output.folder() if output is not None else self.cache.open(target.key)
            if folder is not None:
                return Execution(folder, self.seconds, self.placements)
            self._corrupt.count(target)  # the target's entry turned out corrupt: it runs again

    def _run_pending(self, writer: EntryWriter) -> None:
        """Run what is missing: main-lane nodes (model work) one at a time in this thread, background
        nodes (`Operation.background`: CPU work such as encoding segments) beside them in one worker."""
        order = {node.id: index for index, node in enumerate(self.graph.ordered())}
        pending = self.graph.uncached(self.cache, have=self._outputs)
        readers = self._readers(pending)
        running: dict[Future[NodeOutput], Node] = {}
        loaded: str | None = None

        def finish(node: Node, output: NodeOutput) -> None:
            self._outputs[node.id] = output
            if readers[node.id] == 0:
                output.release()  # no node still to run reads it from memory
            pending.discard(node.id)
            for dep in node.inputs.values():
                readers[dep] -= 1
                if readers[dep] <= 0 and dep in self._outputs:
                    self._outputs[dep].release()

        def collect(futures) -> None:
            for future in futures:
                finish(running.pop(future), future.result())

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scenekit-background") as background:
            try:
                while pending:
                    collect([future for future in running if future.done()])
                    busy = {node.id for node in running.values()}
                    ready = [
                        self.graph.node(n)
                        for n in pending
                        if n not in busy and not any(dep in pending for dep in self.graph.node(n).inputs.values())
                    ]
                    main = [node for node in ready if not get_operation(node.op).background]
                    side = sorted(
                        (node for node in ready if get_operation(node.op).background), key=lambda n: order[n.id]
                    )
                    if not main and not side:
                        collect(wait(running, return_when=FIRST_COMPLETED).done)
                        continue
                    # background work is handed over first, so the main work runs beside it
                    node = side[0] if side else min(main, key=lambda n: _affinity(n, loaded, order[n.id]))
                    inputs = self._inputs(node)
                    if inputs is None:  # an input's cache entry turned out corrupt: it runs again first
                        pending |= self.graph.uncached(self.cache, node.id, self._outputs)
                        readers = self._readers(pending)
                        continue
                    staged = self._claim(node)
                    if isinstance(staged, Path):  # another render computed it while this one waited for its lock
                        finish(node, NodeOutput.committed(staged))
                        continue
                    self._start(node, staged, writer)
                    if get_operation(node.op).background:
                        running[background.submit(self._execute, node, inputs, staged, writer)] = node
                        continue
                    finish(node, self._execute(node, inputs, staged, writer))
                    loaded = node.meta.get("model", loaded)
            except BaseException:
                self.cancellation.cancel()  # background nodes stop at their next step
                raise

    def _readers(self, pending: set[str]) -> Counter[str]:
        """How many nodes still to run read each node's held output values."""
        readers: Counter[str] = Counter()
        for node_id in pending:
            node = self.graph.node(node_id)
            if get_operation(node.op).holds_inputs:
                readers.update(node.inputs.values())
        return readers

    def _inputs(self, node: Node) -> dict[str, NodeOutput] | None:
        """The outputs a node reads (from this render, else verified cache entries); None (after
        dropping it) if an entry is corrupt."""
        inputs = {}
        for name, dep in node.inputs.items():
            if dep in self._outputs:
                inputs[name] = self._outputs[dep]
                continue
            folder = self.cache.open(self.graph.node(dep).key)
            if folder is None:
                self._corrupt.count(self.graph.node(dep))
                return None
            inputs[name] = NodeOutput.committed(folder)
        return inputs

    def _claim(self, node: Node) -> StagedEntry | Path:
        """A work folder holding the node's key lock, or its entry if another render committed it
        while this one waited for the lock (the wait ends early if the render is cancelled)."""
        try:
            return self.cache.claim(
                node.key, op=node.op, node=node.id, waiting=lambda: self.cancellation.check_before(node)
            )
        except OSError as exc:
            raise RenderError(f"{node.id}: the cache at {self.cache.root} is not usable: {exc}") from exc

    def _start(self, node: Node, staged: StagedEntry, writer: EntryWriter) -> None:
        """Checks and progress before a node runs (in the scheduling thread); drops `staged` if it may not run."""
        try:
            self.cancellation.check_before(node)
            writer.check()
        except BaseException:
            staged.discard()
            raise
        self._started += 1
        self._to_run = max(self._to_run, self._started)
        self.events.node_started(node, self._started, self._to_run)

    def _execute(
        self, node: Node, inputs: dict[str, NodeOutput], staged: StagedEntry, writer: EntryWriter
    ) -> NodeOutput:
        """Run a node's operation in its work folder; its entry is committed in the background."""
        context = NodeContext(staged.workdir, node, self.events, self.cancellation)
        try:
            seconds = run_operation(node, inputs, context)
        except BaseException:
            staged.discard()
            raise
        self.seconds[node.id] = seconds
        self.placements[node.id] = {"executor": "local", "host": HOST}
        self.events.node_finished(node, seconds)
        return NodeOutput(writer.submit(staged, context.writes), context.held)
