"""The child side of a render process (`scenekit.server.process`): one GPU's renders, one at a time.

The child sees only its GPU (`CUDA_VISIBLE_DEVICES`, set before CUDA starts), re-prepares each render from the
spec file and options the parent sends, runs it with the server's `Runner` and keeps its models loaded (the
runtime's model cache of this process) for the next one. Everything the render reports goes back through the
pipe as it happens: `RenderEvents` calls, log records, then the result or the error. A reader thread takes the
parent's messages, so a `cancel` reaches the running render at its next step.

Messages from the parent: `("render", job, spec_file, options)`, `("cancel", job, keep)`, `("stop",)`.
To the parent: `("event", method, args)`, `("log", record)`, then one of `("done", result)`,
`("cancelled", text)`, `("invalid", issues)` or `("error", text, traceback)`.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from scenekit.engine.events import RenderEvents
from scenekit.engine.execute import Cancellation
from scenekit.engine.plan import PlannedNode
from scenekit.engine.session import Prepared, RenderOptions, RenderResult, prepare
from scenekit.errors import RenderCancelled, SpecError
from scenekit.graph.nodes import Node
from scenekit.hardware import bound_device

ChildRunner = Callable[[Prepared, RenderEvents, Cancellation], RenderResult]

LOG_LEVELS = ("", "scenekit")
"""The loggers whose levels the child takes from the parent: the root logger and scenekit's."""


class Sender:
    """The pipe to the parent, shared by the render's threads (a background lane reports from its own)."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self.conn.send(message)


class ForwardedEvents:
    """RenderEvents that send every call to the parent, which makes the same call on the render's recorder."""

    def __init__(self, sender: Sender):
        self.sender = sender

    def planned(self, plan: list[PlannedNode]) -> None:
        self.sender.send(("event", "planned", (plan,)))

    def node_started(self, node: Node, position: int, total: int) -> None:
        self.sender.send(("event", "node_started", (node, position, total)))

    def node_step(self, node: Node, done: int, total: int) -> None:
        self.sender.send(("event", "node_step", (node, done, total)))

    def node_finished(self, node: Node, seconds: float) -> None:
        self.sender.send(("event", "node_finished", (node, seconds)))

    def closed(self) -> None:
        self.sender.send(("event", "closed", ()))


class ForwardingHandler(logging.Handler):
    """Every log record of this process, as a picklable dict for the parent (as `logging.SocketHandler` does)."""

    def __init__(self, sender: Sender):
        super().__init__()
        self.sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = dict(record.__dict__)
            data["msg"] = record.getMessage()
            data["args"] = None
            if record.exc_info:
                data["exc_text"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            data["exc_info"] = None
            data.pop("message", None)
            self.sender.send(("log", data))
        except Exception:
            self.handleError(record)


def visible_device(device: str) -> str:
    """Make `device` (`cuda:N` as the parent counts its GPUs) this process's only GPU, before CUDA starts; the
    device this process then renders on (`cuda:0`, or `device` itself for the CPU)."""
    if not device.startswith("cuda:"):
        return device
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        raise RuntimeError(f"CUDA started in the render process for {device} before it could choose its GPU")
    index = int(device.removeprefix("cuda:"))
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = inherited.split(",")[index].strip() if inherited else str(index)
    return "cuda:0"


def child_main(
    conn: Connection,
    device: str,
    runner: ChildRunner,
    init: Callable[[], None] | None,
    levels: dict[str, int],
) -> None:
    """The child process: render the jobs the parent sends on `device` until told to stop or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    own_device = visible_device(device)
    sender = Sender(conn)
    root = logging.getLogger()
    root.addHandler(ForwardingHandler(sender))
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    jobs: queue.SimpleQueue[tuple[int, Path, RenderOptions, Cancellation] | None] = queue.SimpleQueue()
    running: dict[int, Cancellation] = {}
    threading.Thread(target=_read, args=(conn, jobs, running), name="scenekit-child-reader", daemon=True).start()
    with bound_device(own_device):
        if init is not None:
            init()
        while (job := jobs.get()) is not None:
            number, spec_file, options, cancellation = job
            ended = _render(runner, spec_file, options, ForwardedEvents(sender), cancellation)
            running.pop(number, None)
            try:
                sender.send(ended)
            except OSError:  # the parent is gone
                return


def _render(
    runner: ChildRunner, spec_file: Path, options: RenderOptions, events: ForwardedEvents, cancellation: Cancellation
) -> tuple[Any, ...]:
    """Prepare and run one render; the message that ends it."""
    try:
        result = runner(prepare(spec_file, options), events, cancellation)
    except RenderCancelled as exc:
        return ("cancelled", str(exc))
    except SpecError as exc:
        return ("invalid", exc.issues)
    except Exception as exc:
        return ("error", str(exc) or exc.__class__.__name__, traceback.format_exc())
    return ("done", result)


def _read(conn: Connection, jobs: queue.SimpleQueue[Any], running: dict[int, Cancellation]) -> None:
    """The parent's messages: jobs go to the render loop, a cancel to the render it names. When the parent
    says stop or is gone (the pipe closes), the running render is cancelled and the loop ends."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = ("stop",)
        if message[0] == "render":
            number, spec_file, options = message[1:]
            running[number] = Cancellation()  # here, so that a cancel sent right after the job finds it
            jobs.put((number, spec_file, options, running[number]))
        elif message[0] == "cancel":
            cancellation = running.get(message[1])
            if cancellation is not None:
                cancellation.cancel(message[2])
        else:
            for cancellation in list(running.values()):
                cancellation.cancel()
            jobs.put(None)
            return
