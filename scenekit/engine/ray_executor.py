"""The Ray executor: a render's nodes on the GPUs of a Ray cluster (`--executor ray`).

One long-lived actor per GPU (`GpuWorker`) keeps its models loaded across nodes and renders; the
driver sends each ready node to an idle actor that already holds its model (or its inputs), else to the
least-loaded one whose GPU fits the profile (`ray_routing`); segment encodes and the stitch run as Ray
CPU tasks beside them. Every worker reads and writes the one shared cache, computing a node under its
key's lock, so keys and bytes equal a local render's and no node is computed twice, even by two renders
at once. An actor that dies mid-node is restarted by Ray and the node retried on another actor (at most
`MAX_ATTEMPTS` times, then the render fails naming it); Ctrl-C cancels the remote work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    RayActorError,
    RayError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
)

from scenekit.cache import CacheStore
from scenekit.engine.events import RenderEvents
from scenekit.engine.execute import Cancellation, CorruptEntries, Execution
from scenekit.engine.ray_routing import WorkerState, affinity_key, assign, compile_target, fits_nowhere
from scenekit.engine.ray_worker import GpuWorker, run_cpu_node
from scenekit.errors import ExecutorUnavailable, RenderCancelled, RenderError
from scenekit.graph.compile import RenderGraph
from scenekit.graph.nodes import Node
from scenekit.ops import get_operation
from scenekit.runtime import memory
from scenekit.runtime.speed import Machine

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""How many times a node is started on a worker that then dies before the render fails naming it."""
ACTOR_RESTARTS = 4
"""How many times Ray restarts a dead GPU actor (its node goes elsewhere meanwhile)."""
POLL_SECONDS = 0.25
"""How often the driver collects progress from busy workers."""
PROBE_SECONDS = 5.0
"""How long the driver waits for a cluster's address to answer before it says it cannot reach it."""
DEATH_PROBE_SECONDS = 1.0
"""How long the driver waits for a worker that died running a node to answer (a dead one fails at once)."""
CANCEL_WAIT_SECONDS = 30.0
"""How long a cancelled render waits for remote nodes to stop (they release their locks and work folders)."""

_ENV_PREFIXES = ("SCENEKIT_", "OMP_", "MKL_", "HF_", "CUDA_DEVICE_ORDER", "NCCL_", "NVSHMEM_", "TORCH_")
_LOST = (ActorDiedError, ActorUnavailableError, RayActorError, WorkerCrashedError)


def gpu_lane(node: Node) -> bool:
    """Whether a node runs on a GPU worker (a clip's model work) rather than as a CPU task (segments, stitch)."""
    return node.clip is not None and not get_operation(node.op).background


class WorkerPool:
    """This process's connection to a Ray cluster and its GPU actors, shared by every render it runs. Each
    actor holds `gpus_per_worker` GPUs of one host and runs a clip's sampling stages across them
    (`--gpus-per-clip`, `scenekit.runtime.parallel`)."""

    def __init__(
        self,
        address: str | None,
        env: dict[str, str] | None = None,
        worker: type[GpuWorker] = GpuWorker,
        gpus_per_worker: int = 1,
    ):
        if not ray.is_initialized():
            unreachable = _unreachable(address)
            if unreachable:  # Ray itself would retry for ever
                raise ExecutorUnavailable(
                    "--address",
                    f"could not reach the Ray cluster at {address}: {unreachable}; give the head's host:port "
                    "(or ray://host:10001) and check that `ray start --head` runs there",
                )
            try:
                ray.init(address=address, log_to_driver=True, namespace="scenekit")
            except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError... for a bad address
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise ExecutorUnavailable("--address", f"could not start or join {where}: {exc}") from exc
        self.address = address
        self.env = env if env is not None else {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
        self.worker_class = worker
        self.gpus_per_worker = gpus_per_worker
        count = _worker_count(gpus_per_worker)
        options: dict[str, Any] = {
            "num_gpus": gpus_per_worker if count else 0,
            "num_cpus": 0,
            "max_restarts": ACTOR_RESTARTS,
            "max_task_retries": 0,  # the driver retries a lost node itself, on another actor
            "runtime_env": {"env_vars": self.env},
        }
        if not count:
            log.warning("the Ray cluster has no GPU: one worker runs the model nodes on a CPU")
        remote = ray.remote(concurrency_groups={"control": 1})(worker).options(**options)  # type: ignore[call-overload]
        self.actors: list[Any] = [remote.remote(f"gpu-{i}", gpus_per_worker) for i in range(max(count, 1))]
        self.cpu_task = ray.remote(run_cpu_node).options(
            num_cpus=1, max_retries=MAX_ATTEMPTS - 1, runtime_env={"env_vars": self.env}
        )
        described = ray.get([actor.describe.remote() for actor in self.actors])
        self.gpus: list[Machine | None] = [d["machine"] for d in described]
        self.workers = [
            WorkerState(i, f"gpu-{i}", d["host"], d["gpus"], gpu.gpu_bytes if gpu else None)
            for i, (d, gpu) in enumerate(zip(described, self.gpus, strict=True))
        ]
        self.lock = threading.Lock()
        log.info("Ray workers: %s", ", ".join(w.where for w in self.workers))

    def close(self) -> None:
        """End the actors (their models go with them)."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)

    def machine(self) -> Machine:
        """The machine a render's graph is compiled for (`compile_target` of the workers' GPUs)."""
        return compile_target(self.gpus)

    def control(self, index: int, method: str, *args: Any) -> ray.ObjectRef:
        """Call a worker's `events`/`cancel`/`end` beside the node it runs."""
        return getattr(self.actors[index], method).options(concurrency_group="control").remote(*args)

    def loads(self) -> list[dict[str, int]]:
        """Models each worker loaded since it (last) started, by role."""
        return ray.get([actor.loads.options(concurrency_group="control").remote() for actor in self.actors])


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def _unreachable(address: str | None, timeout: float = PROBE_SECONDS) -> str | None:
    """Why nothing answers at a cluster's `host:port` or `ray://host:port` (None when something does, or when
    `address` names no port: none, `auto`, `local`)."""
    if address is None:
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None


def _dead_for_good(actor: Any) -> bool:
    """Whether a worker's actor is dead and will not be restarted (its restarts used up, killed for good); one
    that Ray is restarting answers once it is back, or not within the probe's wait."""
    try:
        ray.get(actor.describe.options(concurrency_group="control").remote(), timeout=DEATH_PROBE_SECONDS)
    except ActorDiedError:
        return True
    except RayError:  # restarting, or slow to answer: given the benefit of the doubt
        return False
    return False


def _worker_count(gpus_per_worker: int) -> int:
    """How many workers of `gpus_per_worker` GPUs the cluster's live hosts hold (0: it has no GPU); raises
    ExecutorUnavailable when it has GPUs but no host has that many."""
    per_host = [int(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n.get("Alive")]
    if not any(per_host):
        return 0
    count = sum(gpus // gpus_per_worker for gpus in per_host)
    if not count:
        raise ExecutorUnavailable(
            "--gpus-per-clip",
            f"no host of the Ray cluster has {gpus_per_worker} GPUs (the most on one host: {max(per_host)})",
        )
    return count


def worker_pool(
    address: str | None = None,
    env: dict[str, str] | None = None,
    worker: type[GpuWorker] = GpuWorker,
    gpus_per_worker: int = 1,
) -> WorkerPool:
    """The process's pool (started on first use, reused while Ray stays connected); `env` (default: this
    process's `SCENEKIT_*`, thread and Hugging Face variables) is the workers' environment, `worker` their class.
    A render asking for another number of GPUs per worker regroups the pool (same environment and class)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and ray.is_initialized() and _POOL.gpus_per_worker != gpus_per_worker:
            log.info("Ray workers: regrouping the GPUs, %d per worker (models load again)", gpus_per_worker)
            _POOL.close()
            _POOL = WorkerPool(_POOL.address, _POOL.env, _POOL.worker_class, gpus_per_worker)
        if _POOL is None or not ray.is_initialized():
            _POOL = WorkerPool(address, env, worker, gpus_per_worker)
        elif address is not None and address != _POOL.address:
            raise ExecutorUnavailable(
                "--address",
                f"this process is connected to the Ray cluster at {_POOL.address or 'local'}, not {address}",
            )
        return _POOL


@dataclass
class _Running:
    node: Node
    worker: WorkerState | None  # None: a CPU task


class RayExecutor:
    """Brings a graph's target into the shared cache with the workers of `worker_pool(address, gpus_per_worker)`."""

    def __init__(
        self,
        render_graph: RenderGraph,
        cache: CacheStore,
        events: RenderEvents,
        cancellation: Cancellation | None = None,
        *,
        address: str | None = None,
        gpus_per_worker: int = 1,
        gpu_gb: dict[str, float] | None = None,
    ):
        self.graph = render_graph
        self.cache = cache
        self.events = events
        self.cancellation = cancellation or Cancellation()
        self.address = address
        self.gpus_per_worker = gpus_per_worker
        self.gpu_gb = gpu_gb or {}
        self.seconds: dict[str, float] = {}
        self.placements: dict[str, dict[str, Any]] = {}
        self._token = uuid.uuid4().hex
        self._corrupt = CorruptEntries(self.cache)
        self._attempts: Counter[str] = Counter()
        self._excluded: dict[str, set[int]] = {}
        self._started = 0
        self._to_run = 0

    def run(self, expected_runs: int) -> Execution:
        """Produce the target's output; `expected_runs` sizes the progress display."""
        self._to_run = expected_runs
        pool = worker_pool(self.address, gpus_per_worker=self.gpus_per_worker)
        target = self.graph.node(self.graph.target)
        try:
            while True:
                self._run_pending(pool)
                found = self.cache.claim(target.key, op=target.op, node=target.id)  # waits for a commit under way
                if isinstance(found, Path):
                    return Execution(found, self.seconds, self.placements)
                found.discard()
                self._corrupt.count(target)
        finally:
            for worker in pool.workers:
                pool.control(worker.index, "end", self._token)

    def _run_pending(self, pool: WorkerPool) -> None:
        order = {node.id: index for index, node in enumerate(self.graph.ordered())}
        pending = self.graph.uncached(self.cache)
        readers = Counter(dep for n in pending for dep in self.graph.node(n).inputs.values())
        running: dict[ray.ObjectRef, _Running] = {}
        cancel_sent = False
        last_poll = 0.0
        try:
            while pending:
                busy = {r.node.id for r in running.values()}
                ready = sorted(
                    (
                        self.graph.node(n)
                        for n in pending
                        if n not in busy and not any(dep in pending for dep in self.graph.node(n).inputs.values())
                    ),
                    key=lambda n: order[n.id],
                )
                if ready and not self.cancellation.requested:
                    self._dispatch(pool, ready, running)
                if self.cancellation.requested and not cancel_sent:
                    self._cancel_remote(pool, running, self.cancellation.keep)
                    cancel_sent = True
                if not running:
                    if cancel_sent:
                        raise RenderCancelled("cancelled")
                    if not any(w.alive for w in pool.workers):
                        raise RenderError(f"nothing can run {', '.join(n.id for n in ready)}: no Ray worker is left")
                    time.sleep(POLL_SECONDS)  # every worker is busy with another render's nodes
                    continue
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
                if time.monotonic() - last_poll >= POLL_SECONDS:
                    self._poll_steps(pool, running)
                    last_poll = time.monotonic()
                for ref in done:
                    self._collect(pool, ref, running.pop(ref), pending, readers)
        except BaseException:
            if running:  # a `watch` cancellation lets the nodes it still wants finish; anything else stops them all
                keep = self.cancellation.keep if self.cancellation.requested else frozenset()
                self._cancel_remote(pool, running, keep)
                ray.wait(list(running), num_returns=len(running), timeout=CANCEL_WAIT_SECONDS)
                with pool.lock:
                    for item in running.values():
                        if item.worker is not None:
                            item.worker.busy -= 1
            raise

    def _dispatch(self, pool: WorkerPool, ready: list[Node], running: dict[ray.ObjectRef, _Running]) -> None:
        """Start the ready CPU nodes as tasks, and the ready GPU nodes on the idle workers `assign` picks."""
        model_nodes = []
        for node in ready:
            if gpu_lane(node):
                model_nodes.append(node)
                continue
            self.cancellation.check_before(node)
            self._started_event(node, "cpu task")
            ref = pool.cpu_task.remote(self._token, node, self._input_keys(node), str(self.cache.root))
            running[ref] = _Running(node, None)
        need = {n.id: self.gpu_gb.get(n.clip or "", 0.0) for n in model_nodes}
        for node in model_nodes:
            problem = fits_nowhere(node, pool.workers, need[node.id])
            if problem:
                raise RenderError(problem)
        with pool.lock:
            keys = {n.id: list(self._input_keys(n).values()) for n in model_nodes}
            chosen = assign(model_nodes, pool.workers, need, self._excluded, keys)
            for _, worker in chosen:
                worker.busy += 1
        for node, worker in chosen:
            self._started_event(node, worker.where)
            forget, worker.forget = sorted(worker.forget), set()
            ref = pool.actors[worker.index].run.remote(
                self._token, node, self._input_keys(node), str(self.cache.root), forget, memory.SETTINGS.policy
            )
            running[ref] = _Running(node, worker)

    def _collect(
        self,
        pool: WorkerPool,
        ref: ray.ObjectRef,
        done: _Running,
        pending: set[str],
        readers: Counter[str],
    ) -> None:
        """Take one finished remote node: its result, a missing input to recompute, or a lost worker."""
        node, worker = done.node, done.worker
        if worker is not None:
            with pool.lock:
                worker.busy -= 1
        try:
            report = ray.get(ref)
        except TaskCancelledError:
            raise RenderCancelled(f"cancelled during {node.id}") from None
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, RenderCancelled | RenderError):
                raise type(cause)(str(cause)) from None
            raise RenderError(f"{node.id} ({node.op}) failed on {self._where(worker)}: {cause}") from None
        except _LOST as exc:
            self._lost(pool, node, worker, exc)
            return
        if "missing" in report:  # an input's entry was removed or corrupt: it runs again first
            dep = next(d for d in node.inputs.values() if self.graph.node(d).key == report["missing"])
            self._corrupt.count(self.graph.node(dep))
            pending |= self.graph.uncached(self.cache, dep)
            readers.update(d for n in self.graph.uncached(self.cache, dep) for d in self.graph.node(n).inputs.values())
            return
        if worker is not None:
            with pool.lock:
                worker.ran += 1
                worker.models = set(report["models"])
                worker.held = set(report["held"])
                worker.last_model = affinity_key(node) or worker.last_model
        if report["ran"]:
            self.seconds[node.id] = report["seconds"]
            placement = worker.placement() if worker is not None else report["placement"]
            self.placements[node.id] = {**placement, "attempts": self._attempts[node.id] + 1}
        self.events.node_finished(node, report.get("seconds", 0.0))
        pending.discard(node.id)
        for dep in node.inputs.values():
            readers[dep] -= 1
            if readers[dep] <= 0:
                self._forget(pool, self.graph.node(dep).key)
        if readers[node.id] <= 0:
            self._forget(pool, node.key)

    def _lost(self, pool: WorkerPool, node: Node, worker: WorkerState | None, exc: Exception) -> None:
        """A worker died running `node`: retry it elsewhere, or fail naming it after `MAX_ATTEMPTS`."""
        self._attempts[node.id] += 1
        where = self._where(worker)
        log.warning("%s: its worker (%s) died: %s; retrying it", node.id, where, exc.__class__.__name__)
        if worker is not None:
            self._excluded.setdefault(node.id, set()).add(worker.index)
            dead_for_good = _dead_for_good(pool.actors[worker.index])
            with pool.lock:
                worker.failures += 1
                worker.models, worker.held, worker.last_model = set(), set(), None
                worker.alive = worker.failures <= ACTOR_RESTARTS and not dead_for_good
        if self._attempts[node.id] >= MAX_ATTEMPTS:
            raise RenderError(
                f"{node.id} ({node.op}): its Ray worker died {self._attempts[node.id]} times (last on {where}); "
                f"giving up. Finished nodes are cached: run the render again to resume"
            )

    def _forget(self, pool: WorkerPool, key: str) -> None:
        with pool.lock:
            for worker in pool.workers:
                if key in worker.held:
                    worker.forget.add(key)

    def _input_keys(self, node: Node) -> dict[str, str]:
        return {name: self.graph.node(dep).key for name, dep in node.inputs.items()}

    def _started_event(self, node: Node, where: str) -> None:
        self._started += 1
        self._to_run = max(self._to_run, self._started)
        self.events.node_started(node, self._started, self._to_run)
        placed = getattr(self.events, "node_placed", None)
        if placed is not None:
            placed(node, where)
        log.info("%s -> %s", node.id, where)

    def _poll_steps(self, pool: WorkerPool, running: dict[ray.ObjectRef, _Running]) -> None:
        """Forward the steps busy GPU workers reported to the progress display."""
        busy = {r.worker.index for r in running.values() if r.worker is not None}
        refs = [pool.control(index, "events", self._token) for index in sorted(busy)]
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL_SECONDS)
        for ref in ready:
            try:
                steps = ray.get(ref)
            except RayError:
                continue  # a dead worker: its node's own result says so
            for node_id, done, total in steps:
                self.events.node_step(self.graph.node(node_id), done, total)

    def _cancel_remote(self, pool: WorkerPool, running: dict[ray.ObjectRef, _Running], keep: frozenset[str]) -> None:
        """Ask every running remote node to stop at its next step (GPU workers) or interrupt it (CPU tasks)."""
        for ref, item in running.items():
            if item.worker is None:
                if item.node.key not in keep:
                    ray.cancel(ref)
            else:
                pool.control(item.worker.index, "cancel", self._token, keep)

    @staticmethod
    def _where(worker: WorkerState | None) -> str:
        return worker.where if worker is not None else "a CPU task"
