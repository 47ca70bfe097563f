"""Render processes: with several GPUs, each GPU's renders run in a long-lived child process of its own.

Threads of one process cannot safely render on several GPUs at once: loading a model changes process-wide
state (diffusers and transformers set torch's default dtype while they build one, so a load for one GPU
changes the dtype of tensors another GPU's render creates meanwhile) and `torch.compile` is not thread-safe.
So each worker of the queue hands its renders to its own child (multiprocessing's `spawn`; the child sees only
its GPU and keeps its models loaded from one render to the next, `scenekit.server.child`). The parent keeps
the queue, the records, the events and cancellation: the child's events and log records come back through a
pipe and are fed, in the worker's thread, to the same `RenderEvents` and log handlers a render in a thread
uses. A cancel reaches the child at the render's next step; a child that dies (killed, out of memory) fails
the render it was running and is started again for the next one.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from scenekit.engine.events import RenderEvents
from scenekit.engine.execute import Cancellation
from scenekit.engine.session import RenderOptions, RenderResult, render
from scenekit.errors import RenderCancelled, RenderError, SpecError
from scenekit.server.child import LOG_LEVELS, ChildRunner, child_main

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
"""How often a worker waiting on its child looks for a cancel to pass on."""
STOP_SECONDS = 10.0
"""How long a child may take to stop (its render cancelled at its next step) before it is killed."""
EVENTS = frozenset({"planned", "node_started", "node_step", "node_finished", "closed"})


class ChildDied(RenderError):
    """The render process died during a render (killed, out of memory, a crash)."""


class RenderProcess:
    """One worker's child process on `device` (`cuda:N`, or `cpu` in tests): renders one at a time with `runner`,
    which the child receives when it starts, as does `init`, run there first (both must pickle)."""

    def __init__(
        self, index: int, device: str, runner: ChildRunner = render, init: Callable[[], None] | None = None
    ) -> None:
        self.index = index
        self.device = device
        self.runner = runner
        self.init = init
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._jobs = itertools.count(1)
        self._cancel_sent = False
        self._lock = threading.Lock()  # one render at a time

    @property
    def pid(self) -> int | None:
        """The child's process id; None before it starts or after it died."""
        return self._process.pid if self._process is not None else None

    def start(self) -> int:
        """Start the child unless it is running (again, if it died while idle); its process id."""
        if self._process is not None and self._process.is_alive():
            return self._process.pid or 0
        if self._process is not None:
            log.warning("render process on %s (pid %s) %s while idle", self.device, self.pid, self._reap())
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        levels = {name: logging.getLogger(name).getEffectiveLevel() for name in LOG_LEVELS}
        process = context.Process(
            target=child_main,
            args=(theirs, self.device, self.runner, self.init, levels),
            name=f"scenekit-render-{self.index}",
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        atexit.register(self.close)  # a parent that exits without closing must not wait on its children
        log.info("render worker %d on %s: process %d", self.index, self.device, process.pid)
        return process.pid or 0

    def render(
        self, spec_file: Path, options: RenderOptions, events: RenderEvents, cancellation: Cancellation
    ) -> RenderResult:
        """Render `spec_file` with `options` in the child, feeding its events to `events`; raises as a render in
        this process would (SpecError, RenderCancelled, RenderError), or ChildDied when the child dies."""
        with self._lock:
            self.start()
            assert self._conn is not None
            number = next(self._jobs)
            self._cancel_sent = False
            ended = False
            try:
                try:
                    self._conn.send(("render", number, spec_file, options))
                except OSError:
                    raise self._died() from None
                while True:
                    message = self._receive(number, cancellation)
                    if message[0] == "event" and message[1] in EVENTS:
                        getattr(events, message[1])(*message[2])
                    elif message[0] == "log":
                        _log_here(message[1])
                    else:
                        ended = True
                        return self._ending(message)
            except ChildDied:
                ended = True
                raise
            finally:
                if not ended:  # this process failed mid-render (e.g. an event it could not record): start afresh
                    self.close()

    def _receive(self, number: int, cancellation: Cancellation) -> tuple[Any, ...]:
        """The child's next message about job `number`, passing a cancel on once it is asked; ChildDied
        when the child ends (what it sent before it ended is read first)."""
        assert self._process is not None and self._conn is not None
        process, conn = self._process, self._conn
        while True:
            if cancellation.requested and not self._cancel_sent:
                self._cancel_sent = True
                with suppress(OSError):
                    conn.send(("cancel", number, cancellation.keep))
            ready = wait([conn, process.sentinel], timeout=POLL_SECONDS)
            if conn.poll():
                try:
                    message: tuple[Any, ...] = conn.recv()
                except (EOFError, OSError):
                    raise self._died() from None
                return message
            if process.sentinel in ready:
                raise self._died()

    def _ending(self, message: tuple[Any, ...]) -> RenderResult:
        """The result a render's last message carries, or its error raised as in this process."""
        kind = message[0]
        if kind == "done":
            result: RenderResult = message[1]
            return result
        if kind == "cancelled":
            raise RenderCancelled(message[1])
        if kind == "invalid":
            raise SpecError(message[1])
        error = RenderError(message[1])
        error.add_note(f"in the render process on {self.device}:\n{message[2]}")
        raise error

    def _died(self) -> ChildDied:
        """The child is gone mid-render: reap it (the next render starts a new one); the error to raise."""
        pid = self.pid
        how = self._reap()
        log.warning("render process on %s (pid %s) %s during a render", self.device, pid, how)
        return ChildDied(
            f"the render process of worker {self.index} on {self.device} (pid {pid}) {how} during this render; "
            "it starts again for the next render"
        )

    def _reap(self) -> str:
        """Collect an ended child; how it ended."""
        assert self._process is not None
        self._process.join(timeout=STOP_SECONDS)
        if self._process.is_alive():  # its pipe broke, yet it runs: it cannot be told what to do any more
            self._process.kill()
            self._process.join()
        how = describe_exit(self._process.exitcode)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
        return how

    def kill(self) -> None:
        """Kill the child now (its render did not stop when asked): the render fails with ChildDied."""
        process = self._process
        if process is not None:
            process.kill()

    def ask_to_stop(self) -> None:
        """Tell the child to stop (cancelling its render at the next step) without waiting for it."""
        if self._conn is not None:
            with suppress(OSError):
                self._conn.send(("stop",))

    def close(self) -> None:
        """Stop the child: asked first, killed if it has not ended within STOP_SECONDS."""
        atexit.unregister(self.close)
        if self._process is None:
            return
        self.ask_to_stop()
        self._process.join(timeout=STOP_SECONDS)
        if self._process.is_alive():
            log.warning("render process on %s (pid %s) did not stop: killed", self.device, self.pid)
        self._reap()


class RenderProcesses:
    """A render process for each of `devices`, worker `i` on `devices[i]`."""

    def __init__(
        self, devices: list[str], runner: ChildRunner = render, init: Callable[[], None] | None = None
    ) -> None:
        self.workers = [RenderProcess(index, device, runner, init) for index, device in enumerate(devices)]

    @property
    def devices(self) -> list[str]:
        return [worker.device for worker in self.workers]

    def __getitem__(self, index: int) -> RenderProcess:
        return self.workers[index]

    def start(self) -> None:
        """Start every child (they import side by side while the server starts)."""
        for worker in self.workers:
            worker.start()

    def close(self) -> None:
        """Stop every child: all are told at once, then each is waited for."""
        for worker in self.workers:
            worker.ask_to_stop()
        for worker in self.workers:
            worker.close()


def describe_exit(code: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if code is None:
        return "did not end"
    if code < 0:
        name = signal.Signals(-code).name
        return f"was killed by {name} (out of memory?)" if -code == signal.SIGKILL else f"was killed by {name}"
    return f"exited with code {code}"


def _log_here(data: dict[str, Any]) -> None:
    """A log record of the child, handled as if this thread (the render's worker) had logged it, so the
    render's log handler and the server's own see it; it keeps the child's process id."""
    record = logging.makeLogRecord(data)
    record.thread = threading.get_ident()
    record.threadName = threading.current_thread().name
    logging.getLogger(record.name).handle(record)
