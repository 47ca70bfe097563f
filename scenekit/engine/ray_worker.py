"""What runs inside the Ray executor's processes: a GPU worker (one long-lived actor per GPU, with its own
model pool) and the CPU task that runs segment encodes and the stitch.

Both read their inputs from the shared cache (or, on a GPU worker, from the outputs it still holds in
memory) and compute the node under its key's lock exactly as the local executor does. A GPU worker
returns as soon as the node is computed and commits its entry in the background, still holding the key's
lock (its next node's GPU work overlaps the disk work, as in the local executor): a reader elsewhere that
finds no entry yet waits for that lock, then reads the entry. Plain Python: the executor wraps these with Ray.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from scenekit.cache import CacheStore
from scenekit.cache.locks import HOST
from scenekit.engine.execute import Cancellation, NodeContext, run_operation
from scenekit.engine.plan import PlannedNode
from scenekit.engine.ray_routing import affinity_key
from scenekit.engine.writer import EntryWriter
from scenekit.graph.nodes import Node
from scenekit.ops import NodeOutput
from scenekit.runtime.memory import gpu_capacity_bytes, use_memory_policy
from scenekit.runtime.parallel import use_gpus_per_clip
from scenekit.runtime.pool import MODELS
from scenekit.runtime.speed import this_machine, use_compile_cache

log = logging.getLogger(__name__)

HELD_LIMIT = 16
"""At most this many node outputs stay in a worker's memory (the oldest go first; readers then read files)."""

_LARGE_ROLES = ("transformer", "text_encoder")
_STORES: dict[str, CacheStore] = {}


def _store(root: str) -> CacheStore:
    """One store per cache folder and process, so what it verified stays verified across nodes."""
    return _STORES.setdefault(root, CacheStore(Path(root)))


class _Buffered:
    """RenderEvents that keep a node's steps for the driver to collect (`GpuWorker.events`)."""

    def __init__(self, sink: list[tuple[str, int, int]], lock: threading.Lock):
        self._sink = sink
        self._lock = lock

    def planned(self, plan: list[PlannedNode]) -> None:
        pass

    def node_started(self, node: Node, position: int, total: int) -> None:
        pass

    def node_step(self, node: Node, done: int, total: int) -> None:
        with self._lock:
            self._sink.append((node.id, done, total))

    def node_finished(self, node: Node, seconds: float) -> None:
        pass

    def closed(self) -> None:
        pass


def execute_node(
    store: CacheStore,
    node: Node,
    inputs: dict[str, NodeOutput],
    events: _Buffered,
    cancellation: Cancellation,
    writer: EntryWriter,
) -> tuple[float, NodeOutput] | None:
    """Compute `node` under its key's lock, its entry queued on `writer` (committed in the background, the
    lock held until then): (seconds, its output), or None when another worker or render committed it while
    this one waited for the lock."""
    cancellation.check_before(node)
    staged = store.claim(node.key, op=node.op, node=node.id, waiting=lambda: cancellation.check_before(node))
    if isinstance(staged, Path):
        return None
    context = NodeContext(staged.workdir, node, events, cancellation)
    try:
        seconds = run_operation(node, inputs, context)
    except BaseException:
        staged.discard()
        raise
    return seconds, NodeOutput(writer.submit(staged, context.writes), context.held)


def read_inputs(
    store: CacheStore, node: Node, input_keys: dict[str, str], held: dict[str, NodeOutput], cancellation: Cancellation
) -> dict[str, Any]:
    """`{"inputs": ...}` from memory or verified entries, or `{"missing": KEY}` for an input absent or corrupt.
    An entry not there yet may still be committing on the worker that made it: wait for its key's lock."""
    inputs = {}
    for name, key in input_keys.items():
        if key in held:
            inputs[name] = held[key]
            continue
        folder = store.open(key)
        if folder is None:
            found = store.claim(key, op="?", node=f"input {name}", waiting=lambda: cancellation.check_before(node))
            if not isinstance(found, Path):
                found.discard()
                return {"missing": key}
            folder = found
        inputs[name] = NodeOutput.committed(folder)
    return {"inputs": inputs}


def run_cpu_node(token: str, node: Node, input_keys: dict[str, str], cache_root: str) -> dict[str, Any]:
    """A CPU node (a segment encode, the stitch) as a Ray task. Cancelling the task interrupts its main thread
    at any line, so the node runs in a thread of its own, asked to stop at its next step, that always releases
    its key's lock and work folder; the main thread waits for it."""
    cancellation = Cancellation()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = _run_cpu_node(_store(cache_root), node, input_keys, cancellation)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=work, name=f"scenekit {node.id}")
    thread.start()
    while thread.is_alive():
        try:
            thread.join()
        except KeyboardInterrupt:
            cancellation.cancel()
    if "error" in outcome:
        raise outcome["error"]
    result: dict[str, Any] = outcome["result"]
    return result


def _run_cpu_node(
    store: CacheStore, node: Node, input_keys: dict[str, str], cancellation: Cancellation
) -> dict[str, Any]:
    found = read_inputs(store, node, input_keys, {}, cancellation)
    if "missing" in found:
        return found
    writer = EntryWriter()
    try:
        result = execute_node(store, node, found["inputs"], _Buffered([], threading.Lock()), cancellation, writer)
        writer.drain()  # the driver reads the target's entry as soon as the task returns
    finally:
        writer.close()
    place = {"executor": "ray", "host": HOST, "worker": f"cpu pid {os.getpid()}", "gpus": []}
    return {"ran": False} if result is None else {"ran": True, "seconds": result[0], "placement": place}


class GpuWorker:
    """One GPU's worker: runs model nodes one at a time, keeping its models (the process's `MODELS`) and the
    outputs later nodes read warm across nodes and renders. `events` and `cancel` are answered from a second
    thread while a node runs."""

    def __init__(self, name: str, gpus_per_clip: int = 1):
        self.name = name
        use_gpus_per_clip(gpus_per_clip)  # the actor's GPUs: a clip's sampling stages run across all of them
        self._lock = threading.Lock()
        self._steps: dict[str, list[tuple[str, int, int]]] = {}
        self._cancellations: dict[str, Cancellation] = {}
        self._held: dict[str, NodeOutput] = {}
        self._models: dict[str, set[int]] = {}  # affinity key -> ids of the large models it loaded
        self._loads: Counter[str] = Counter()
        self._writer = EntryWriter()

    def describe(self) -> dict[str, Any]:
        """Where this worker runs: host, GPU ids, pid, and its GPU as a `scenekit.runtime.speed.Machine` with its
        memory (None without CUDA)."""
        import ray

        gpu = None
        if os.path.exists("/proc/driver/nvidia"):  # a CPU machine (fake GPUs) need not import torch here
            import torch

            if torch.cuda.is_available():
                gpu = replace(this_machine("cuda:0"), gpu_bytes=gpu_capacity_bytes("cuda:0"))
        return {
            "host": HOST,
            "gpus": [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])],
            "machine": gpu,
            "pid": os.getpid(),
        }

    def run(
        self, token: str, node: Node, input_keys: dict[str, str], cache_root: str, forget: list[str], memory: str
    ) -> dict:
        """Run one node under the render's `memory` policy; returns `ran` (False: another worker made it),
        `seconds`, `models` (the affinity keys still loaded), `loads` (models loaded so far, by role) and
        `held`, or `missing`: an input's key."""
        for key in forget:
            self._held.pop(key, None)
        use_memory_policy(memory)
        use_compile_cache(Path(cache_root) / "compiled")  # the driver's: compiled kernels shared through the cache
        store = _store(cache_root)
        with self._lock:
            steps = self._steps.setdefault(token, [])
            cancellation = self._cancellations.setdefault(token, Cancellation())
        self._writer.check()  # an entry that failed to commit fails the render now, naming its node
        found = read_inputs(store, node, input_keys, self._held, cancellation)
        if "missing" in found:
            return found
        before = self._large_models()
        result = execute_node(store, node, found["inputs"], _Buffered(steps, self._lock), cancellation, self._writer)
        self._track_models(node, before)
        report: dict[str, Any] = {"ran": result is not None, "models": sorted(self._models), "loads": dict(self._loads)}
        if result is not None:
            report["seconds"] = result[0]
            self._held[node.key] = result[1]
            while len(self._held) > HELD_LIMIT:
                self._held.pop(next(iter(self._held)))
        report["held"] = sorted(self._held)
        return report

    def events(self, token: str) -> list[tuple[str, int, int]]:
        """The steps reported for `token`'s nodes since the last call: (node id, done, total)."""
        with self._lock:
            steps = self._steps.get(token, [])
            taken = list(steps)
            steps.clear()
        return taken

    def cancel(self, token: str, keep: frozenset[str] = frozenset()) -> None:
        """Stop `token`'s running node at its next step (unless its key is in `keep`) and refuse its next ones."""
        with self._lock:
            self._cancellations.setdefault(token, Cancellation()).cancel(keep)

    def end(self, token: str) -> None:
        """Forget a finished render's state."""
        with self._lock:
            self._steps.pop(token, None)
            self._cancellations.pop(token, None)

    def loads(self) -> dict[str, int]:
        """How many models of each role this worker has loaded since it started."""
        return dict(self._loads)

    def _large_models(self) -> dict[int, str]:
        return {id(model): role for role in _LARGE_ROLES for model in MODELS.loaded(role)}

    def _track_models(self, node: Node, before: dict[int, str]) -> None:
        """Count the large models the node loaded, note them under its affinity key, and drop the keys whose
        models are gone (freed to make room, or the text encoder once sampling starts)."""
        after = self._large_models()
        new = set(after) - set(before)
        self._loads.update(
            {after[i] for i in new}
        )  # a load is a role that got new models (text encoder + tokenizer: one)
        key = affinity_key(node)
        if key is not None and (new or key not in self._models):
            self._models[key] = new or self._models.get(key, set())
        self._models = {k: ids for k, ids in self._models.items() if ids <= set(after)}
