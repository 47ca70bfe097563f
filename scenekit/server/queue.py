"""The render queue: one worker thread per device takes queued renders in order from the store and runs them.

With one device, its worker renders in this process, bound to the device (`scenekit.hardware.bound_device`:
`cuda:0` or `cpu`) and to its own slot of the runtime's model cache (`scenekit.runtime.pool.MODELS`), so its
models stay loaded from one render to the next. With several GPUs, each worker hands its renders to a child
process of its own (`scenekit.server.process`), which keeps that GPU's models loaded: renders on several GPUs
in threads of one process would share process-wide state (torch's default dtype while a model loads,
`torch.compile`). With the Ray executor one unbound worker feeds the cluster, whose actors hold the models.
How a prepared render runs is a `Runner`: `render` of the engine, which runs the executor the render's
options name; a child process runs it on the render it prepares again from the spec file and options.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from scenekit.engine.events import RenderEvents
from scenekit.engine.execute import Cancellation
from scenekit.engine.session import Prepared, RenderOptions, RenderResult, prepare, render
from scenekit.errors import RenderCancelled, SpecError
from scenekit.hardware import bound_device
from scenekit.runtime.pool import MODELS
from scenekit.server.events import EventLog, RenderRecorder, ThreadLogHandler, plan_json
from scenekit.server.process import STOP_SECONDS, ChildDied, RenderProcess, RenderProcesses
from scenekit.server.specs import issue_json, relative

log = logging.getLogger(__name__)

Runner = Callable[[Prepared, RenderEvents, Cancellation], RenderResult]
"""Runs a prepared render to its output, reporting events and honouring cancellation."""


def render_options(options: dict[str, Any], base: RenderOptions | None = None) -> RenderOptions:
    """The engine's options from a request's stored `options` (model, size, vars) over the server's `base` (its
    executor); nothing may leave the project."""
    size = options.get("size")
    return replace(
        base or RenderOptions(),
        model=options.get("model"),
        size=(size[0], size[1]) if size else None,
        variables=dict(options.get("vars") or {}),
    )


class RenderQueue:
    """Queued renders run oldest first, one at a time on each of `devices` (None: a worker bound to no
    device, for an executor that places the work itself), or in each of `children`' processes (which run
    their own runner); the store keeps the queue across restarts."""

    def __init__(
        self,
        project: Path,
        log_: EventLog,
        runner: Runner = render,
        devices: list[str | None] | None = None,
        base: RenderOptions | None = None,
        children: RenderProcesses | None = None,
    ):
        self.project = project
        self.events = log_
        self.store = log_.store
        self.runner = runner
        self.children = children
        self.devices: list[str | None] = list(children.devices) if children is not None else devices or [None]
        self.base = base or RenderOptions()
        self._wake = threading.Event()  # set when there may be a render to take
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._prepared: dict[str, Prepared] = {}
        self._running: dict[str, Cancellation] = {}
        self._cancel_asked: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Put renders a stopped server left running back in the queue, then start the workers."""
        for render_id in self.store.requeue_interrupted():
            self.events.emit(render_id, "log", {"level": "info", "message": "server restarted: queued again"})
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._work, args=(index, device), name=f"scenekit-render-{index}", daemon=True)
            for index, device in enumerate(self.devices)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the workers; renders they were running stay queued and resume (from the cache) on restart. A
        child process whose render has not stopped within STOP_SECONDS (it is loading or compiling a model, with
        no step to stop at) is killed."""
        self._stopping.set()
        with self._lock:
            for cancellation in self._running.values():
                cancellation.cancel()
        self._wake.set()
        if self.children is not None:
            deadline = time.monotonic() + STOP_SECONDS
            for thread in self._threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            for thread, child in zip(self._threads, self.children.workers, strict=True):
                if thread.is_alive():
                    log.warning(
                        "render worker %d on %s did not stop within %gs: killed",
                        child.index,
                        child.device,
                        STOP_SECONDS,
                    )
                    child.kill()
        for thread in self._threads:
            thread.join()

    def submit(self, render_id: str, request: dict[str, Any], prepared: Prepared) -> list[dict[str, Any]]:
        """Queue a render whose spec was just prepared; its plan as JSON."""
        plan = plan_json(prepared.plan())
        if self.children is None:  # a child prepares the render again in its own process
            self._prepared[render_id] = prepared
        self.events.emit(render_id, "queued", {})  # before a worker can see it: the first event
        self.store.add(render_id, request, plan)
        self._wake.set()
        return plan

    def cancel(self, render_id: str) -> None:
        """Cancel a queued render, or ask a running one to stop at its next step."""
        if self.store.cancel_queued(render_id):
            self._prepared.pop(render_id, None)
            self.events.emit(render_id, "render_cancelled", {})
            return
        with self._lock:
            self._cancel_asked.add(render_id)
            if render_id in self._running:
                self._running[render_id].cancel()

    def _work(self, index: int, device: str | None) -> None:
        """Worker `index`: on `device`, with its own models (slot `index` of the model cache, or its child
        process), until stopped."""
        child = self.children[index] if self.children is not None else None
        with ExitStack() as bindings:
            if device is not None and child is None:
                bindings.enter_context(bound_device(device))
                bindings.enter_context(MODELS.bound(index))
                log.info("render worker %d on %s", index, device)
            while not self._stopping.is_set():
                self._wake.clear()  # before looking: a render queued from here on sets it again
                record = self.store.claim_next()
                if record is None:
                    self._wake.wait(timeout=1.0)
                    continue
                self._wake.set()  # another idle worker may take the next one (the clear above may have hidden it)
                self._run(record, index, child)

    def _render(
        self, record: dict[str, Any], child: RenderProcess | None, events: RenderEvents, cancellation: Cancellation
    ) -> RenderResult:
        """Run a claimed render here, or in `child`, which prepares it again from its spec file and options (in
        the cache this process chose when it queued it)."""
        request = record["request"]
        spec_file = self.project / request["spec_file"]
        options = render_options(request["options"], self.base)
        if child is None:
            prepared = self._prepared.pop(record["id"], None) or prepare(spec_file, options)
            return self.runner(prepared, events, cancellation)
        if request.get("cache"):
            options = replace(options, cache_dir=Path(request["cache"]))
        return child.render(spec_file, options, events, cancellation)

    def _run(self, record: dict[str, Any], index: int, child: RenderProcess | None) -> None:
        render_id = record["id"]
        cancellation = Cancellation()
        with self._lock:
            self._running[render_id] = cancellation
            if render_id in self._cancel_asked or self._stopping.is_set():
                cancellation.cancel()
        recorder = RenderRecorder(self.events, render_id)
        handler = ThreadLogHandler(self.events, render_id)
        logging.getLogger("scenekit").addHandler(handler)
        started = time.perf_counter()
        self.events.emit(render_id, "render_started", {"worker": index, "device": self.devices[index]})
        try:
            result = self._render(record, child, recorder, cancellation)
        except SpecError as exc:  # the spec changed on disk before a requeued render ran
            self._end(render_id, "failed", errors=[issue_json(i, self.project) for i in exc.issues])
        except RenderCancelled:
            recorder.stop_running("cancelled")
            if self._stopping.is_set() and render_id not in self._cancel_asked:
                self._leave_queued(render_id)
            else:
                self._end(render_id, "cancelled")
        except ChildDied as exc:
            if self._stopping.is_set():  # e.g. a SIGTERM to the server's whole process group
                recorder.stop_running("cancelled")
                self._leave_queued(render_id)
            else:
                self._fail(render_id, recorder, exc)
        except Exception as exc:
            self._fail(render_id, recorder, exc)
        else:
            manifest = json.loads(result.manifest.read_text())
            self.store.update(render_id, output=relative(self.project, result.output), manifest=json.dumps(manifest))
            self._end(render_id, "done", seconds=round(time.perf_counter() - started, 3))
        finally:
            logging.getLogger("scenekit").removeHandler(handler)
            with self._lock:
                self._running.pop(render_id, None)
                self._cancel_asked.discard(render_id)

    def _fail(self, render_id: str, recorder: RenderRecorder, exc: Exception) -> None:
        log.debug("render %s failed", render_id, exc_info=exc)
        failed = recorder.stop_running("failed")
        message = str(exc) or exc.__class__.__name__
        self._end(render_id, "failed", errors=[{"node": failed[0] if failed else None, "message": message}])

    def _leave_queued(self, render_id: str) -> None:
        """A render the server's stop interrupted: queued, to resume (from the cache) on the next start."""
        self.store.update(render_id, state="queued")
        self.events.emit(render_id, "log", {"level": "info", "message": "server stopping: left queued"})

    def _end(self, render_id: str, state: str, errors: list[dict[str, Any]] | None = None, **data: Any) -> None:
        self.store.update(render_id, state=state, finished=time.time(), errors=errors or [])
        self.events.emit(render_id, f"render_{state}", {**data, "errors": errors or []})
