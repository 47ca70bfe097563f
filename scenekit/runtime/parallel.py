"""One node across several GPUs: a group of ranks that run the same job in lockstep.

``--gpus-per-clip N`` (`use_gpus_per_clip`) asks for it. The render process starts N rank processes once
(`rank_group`), as torchrun would: rank ``r`` joins one ``torch.distributed`` process group (NCCL on GPU
``r``, gloo on the CPU) and waits for jobs. `RankGroup.run` hands every rank the same job, a module-level
function and its payload; the ranks run it together (their collectives meet inside the job) and keep their
models loaded between jobs. Only rank 0's return value and its messages (progress) come back to the caller,
which writes whatever is written: ranks write no files. A failure on any rank, or the caller giving up
(cancellation raising in ``on_message``), stops the whole group; the next job starts a fresh one.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import queue
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scenekit.hardware import DEVICE_ENV, compute_device

log = logging.getLogger(__name__)

#: How long the caller waits for a rank's next word before checking that every rank is still alive (s).
_POLL_S = 0.2

_gpus_per_clip = 1


def use_gpus_per_clip(count: int) -> None:
    """Run every sampling stage of a clip across ``count`` GPUs (set per render by the engine)."""
    global _gpus_per_clip
    if count < 1:
        raise ValueError(f"gpus per clip must be at least 1, got {count}")
    _gpus_per_clip = count


def gpus_per_clip() -> int:
    """How many GPUs one clip's sampling stages run across in this process (1: no group)."""
    return _gpus_per_clip


def parallel_problem(count: int, device: str | None = None) -> str | None:
    """Why ``count`` ranks cannot run on this machine (None when they can): each needs a GPU of its own."""
    device = device or compute_device()
    if count <= 1 or not device.startswith("cuda"):
        return None
    import torch

    visible = torch.cuda.device_count()
    if count > visible:
        return f"--gpus-per-clip {count} needs {count} GPUs; this machine has {visible}"
    return None


@dataclass(frozen=True)
class Rank:
    """What a job knows of where it runs."""

    rank: int
    world_size: int
    device: str
    """`cuda:RANK` on GPUs, `cpu` with gloo."""
    _outbox: Any

    def send(self, message: Any) -> None:
        """Hand ``message`` to the caller's ``on_message`` (rank 0 only; the others' are dropped)."""
        if self.rank == 0:
            self._outbox.put(("message", 0, message))


class RankFailed(RuntimeError):
    """A rank raised, or died, during a job."""


class RankGroup:
    """``world_size`` long-lived rank processes in one process group."""

    def __init__(self, world_size: int, device: str | None = None) -> None:
        import torch.multiprocessing as mp

        self.world_size = world_size
        self.device = device or compute_device()
        problem = parallel_problem(world_size, self.device)
        if problem:
            raise RuntimeError(problem)
        context = mp.get_context("fork" if _fork_is_safe(self.device) else "spawn")
        self._outbox = context.Queue()
        self._inboxes = [context.Queue() for _ in range(world_size)]
        port = _free_port()
        self._processes = [
            context.Process(  # type: ignore[attr-defined]  # every concrete context has Process
                target=_rank_main,
                args=(rank, world_size, port, self.device, self._inboxes[rank], self._outbox, os.getpid()),
                name=f"scenekit-rank-{rank}",
                daemon=True,
            )
            for rank in range(world_size)
        ]
        for process in self._processes:
            process.start()
        log.info("parallel: started %d ranks on %s (port %d)", world_size, self.device, port)

    @property
    def alive(self) -> bool:
        return all(process.is_alive() for process in self._processes)

    def run(
        self, job: Callable[[Rank, Any], Any], payload: Any, on_message: Callable[[Any], None] | None = None
    ) -> Any:
        """Run ``job(rank, payload)`` on every rank; rank 0's return value. Stops the group on any failure."""
        try:
            for inbox in self._inboxes:
                inbox.put(pickle.dumps((job, payload)))
            return self._collect(on_message)
        except BaseException:
            self.close(force=True)  # ranks may be stuck in a collective the failed one never joins
            raise

    def _collect(self, on_message: Callable[[Any], None] | None) -> Any:
        result: Any = None
        done: set[int] = set()
        while len(done) < self.world_size:
            try:
                kind, rank, value = self._outbox.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [p.name for p in self._processes if not p.is_alive()]
                if dead:
                    raise RankFailed(f"{', '.join(dead)} died (exit codes {self._exit_codes()})") from None
                continue
            if kind == "message":
                if on_message is not None:
                    on_message(value)
            elif kind == "error":
                raise RankFailed(f"rank {rank} of {self.world_size} failed:\n{value}")
            else:
                done.add(rank)
                if rank == 0:
                    result = pickle.loads(value)
        return result

    def _exit_codes(self) -> list[int | None]:
        return [process.exitcode for process in self._processes]

    def close(self, force: bool = False) -> None:
        """Stop every rank: politely (by force at once with ``force``, or for any still running after 5 s)."""
        for inbox in self._inboxes:
            with contextlib.suppress(ValueError, OSError):  # the queue is already closed
                inbox.put(None)
        for process in self._processes:
            process.join(timeout=0 if force else 5)
            if process.is_alive():
                process.kill()
                process.join()
        for box in (*self._inboxes, self._outbox):
            box.close()
            box.cancel_join_thread()
        if _GROUPS.get((self.world_size, self.device)) is self:
            del _GROUPS[(self.world_size, self.device)]
        log.info("parallel: stopped %d ranks", self.world_size)


_GROUPS: dict[tuple[int, str], RankGroup] = {}


def rank_group(world_size: int, device: str | None = None) -> RankGroup:
    """The running group of ``world_size`` ranks on ``device``, started on first use (and again after a failure)."""
    device = device or compute_device()
    group = _GROUPS.get((world_size, device))
    if group is None or not group.alive:
        if group is not None:
            group.close()
        group = _GROUPS[(world_size, device)] = RankGroup(world_size, device)
    return group


@atexit.register
def close_groups() -> None:
    """Stop every rank group of this process."""
    for group in list(_GROUPS.values()):
        group.close()


def _fork_is_safe(device: str) -> bool:
    """Whether ranks may be forked from this process: they then start in a fraction of a second, where a
    spawned rank imports torch and diffusers again. Only on the CPU (a process holding CUDA cannot fork) and
    with one intra-op thread: a child forked from a process whose OpenMP pool has threads hangs in its first
    parallel region."""
    import torch

    return not device.startswith("cuda") and torch.get_num_threads() == 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _next_job(inbox: Any, parent: int) -> bytes | None:
    """The next job for this rank; None when told to stop, or once the process that started it is gone."""
    while os.getppid() == parent:
        try:
            return inbox.get(timeout=_POLL_S * 5)
        except queue.Empty:
            continue
    return None


def _rank_main(rank: int, world_size: int, port: int, device: str, inbox: Any, outbox: Any, parent: int) -> None:
    """A rank process: join the process group, then run jobs until told to stop (or orphaned)."""
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    if device.startswith("cuda"):
        torch.cuda.set_device(rank)
        device, backend = f"cuda:{rank}", "nccl"
    else:
        backend = "gloo"
    os.environ[DEVICE_ENV] = device  # the pools load onto this rank's device
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    here = Rank(rank, world_size, device, outbox)
    try:
        while (message := _next_job(inbox, parent)) is not None:
            job, payload = pickle.loads(message)
            try:
                value = job(here, payload)
            except BaseException:
                outbox.put(("error", rank, traceback.format_exc()))
                continue
            outbox.put(("done", rank, pickle.dumps(value) if rank == 0 else None))
    finally:
        dist.destroy_process_group()
