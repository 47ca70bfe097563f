"""Where the Ray executor sends a ready node: which GPU worker, by model affinity, data locality and load.

Pure bookkeeping (no Ray here): the executor keeps one `WorkerState` per GPU actor and asks `assign`
which idle worker takes which ready node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scenekit.graph.nodes import Node
from scenekit.runtime.speed import Machine

GB = 1024**3


@dataclass
class WorkerState:
    """What the driver knows of one GPU actor."""

    index: int
    name: str
    host: str = "?"
    gpus: list[str] = field(default_factory=list)
    gpu_bytes: int | None = None
    """The GPU's total memory; None when unknown (a CPU worker, fake GPUs): every profile is taken to fit."""
    models: set[str] = field(default_factory=set)
    """Affinity keys (`affinity_key`) of the models the actor holds loaded, as it last reported."""
    last_model: str | None = None
    """The affinity key of the last node it ran that needed a model (the one surely still loaded)."""
    held: set[str] = field(default_factory=set)
    """Keys of node outputs the actor keeps in memory (for the nodes that read them next)."""
    forget: set[str] = field(default_factory=set)
    """Keys whose held outputs no render still reads: sent with the actor's next node."""
    busy: int = 0
    ran: int = 0
    failures: int = 0
    alive: bool = True

    @property
    def where(self) -> str:
        """`host GPU 0` (or `host cpu`), for progress and the manifest."""
        return f"{self.host} GPU {','.join(self.gpus)}" if self.gpus else f"{self.host} cpu"

    def placement(self) -> dict[str, Any]:
        return {"executor": "ray", "host": self.host, "worker": self.name, "gpus": list(self.gpus)}


def affinity_key(node: Node) -> str | None:
    """The model (and adapters) a node needs loaded, or None when it needs none of its own."""
    model = node.meta.get("model")
    if model is None:
        return None
    lora = node.params.get("lora")
    return f"{model} lora={lora}" if lora else str(model)


def fits(worker: WorkerState, need_gb: float) -> bool:
    """Whether a profile needing `need_gb` GB of GPU memory may run on the worker's GPU."""
    return worker.gpu_bytes is None or need_gb * GB <= worker.gpu_bytes


def fits_nowhere(node: Node, workers: Iterable[WorkerState], need_gb: float) -> str | None:
    """Why no worker can ever run the node (its profile fits no GPU), or None."""
    workers = [w for w in workers if w.alive]
    if any(fits(w, need_gb) for w in workers):
        return None
    largest = max((w.gpu_bytes or 0 for w in workers), default=0) / GB
    return (
        f"{node.id}: its model needs {need_gb:g} GB of GPU memory and the largest GPU of the Ray cluster has "
        f"{largest:.1f} GB (of {len(workers)} live worker(s))"
    )


def _preference(worker: WorkerState, node: Node, inputs: list[str]) -> tuple[bool, bool, int]:
    """(used the node's model last, holds it, how many of its inputs (`inputs`: their keys) it holds in memory)."""
    key = affinity_key(node)
    held = key is not None and key in worker.models
    return (held and key == worker.last_model, held, sum(dep in worker.held for dep in inputs))


def assign(
    ready: list[Node],
    workers: list[WorkerState],
    need_gb: dict[str, float],
    excluded: dict[str, set[int]],
    input_keys: dict[str, list[str]],
) -> list[tuple[Node, WorkerState]]:
    """Idle workers for ready nodes (in the given order): first the nodes that need the model an idle worker used
    last go there (so a worker that just encoded a prompt encodes the waiting prompts before it samples and
    frees the text encoder, as the local executor does), then those needing another model it holds, then the
    nodes whose inputs an idle worker holds in memory; the others go to the least-loaded idle worker
    that fits. A node is never sent to a worker in `excluded[node.id]` (one that died running it) while
    another live worker could take it, even later.

    `input_keys[node.id]` are the keys of the node's inputs (to find a worker holding them in memory).
    """
    idle = {w.index: w for w in workers if w.alive and w.busy == 0}
    chosen: list[tuple[Node, WorkerState]] = []
    left = list(ready)

    def allowed(node: Node) -> list[WorkerState]:
        need, banned = need_gb.get(node.id, 0.0), excluded.get(node.id, set())
        fitting = [w for w in idle.values() if fits(w, need)]
        fresh = [w for w in fitting if w.index not in banned]
        if fresh or not fitting:
            return fresh
        # only workers it died on are idle: wait for another live one, unless none is left
        return [] if any(w.alive and w.index not in banned and fits(w, need) for w in workers) else fitting

    def take(node: Node, worker: WorkerState) -> None:
        chosen.append((node, worker))
        left.remove(node)
        del idle[worker.index]

    for level in (0, 1, 2):  # the node's model: used last there, loaded there; 2: its inputs are held there
        for node in list(left):
            keys = input_keys.get(node.id, [])
            candidates = [w for w in allowed(node) if _preference(w, node, keys)[level]]
            if candidates:
                take(node, max(candidates, key=lambda w: (_preference(w, node, keys), -w.ran, -w.index)))
    for node in list(left):  # the rest: least loaded (fewest models, then fewest nodes run)
        candidates = allowed(node)
        if candidates:
            take(node, min(candidates, key=lambda w: (len(w.models), w.ran, w.index)))
    return chosen


def compile_target(gpus: list[Machine | None]) -> Machine:
    """The machine a render's graph is compiled for, from each worker's GPU (None: it has none): the weakest
    (lowest compute capability and memory; torchao only if every worker has it), so no key depends on which
    worker runs a node; the CPU when a worker has no GPU."""
    found = [gpu for gpu in gpus if gpu is not None]
    if not found or len(found) < len(gpus):
        return Machine("cpu", name="the Ray cluster")
    names = ", ".join(sorted({gpu.name for gpu in found}))
    return Machine(
        "cuda",
        min(gpu.capability or 0.0 for gpu in found),
        all(gpu.has_torchao for gpu in found),
        min(gpu.gpu_bytes or 0 for gpu in found),
        name=f"the Ray cluster's GPUs ({names})",
    )
