"""The render queue: one worker thread per device takes queued renders in order from the store and runs them.

Each worker is bound to its device (`scenekit.hardware.bound_device`: `cuda:0`, `cuda:1`, ... or `cpu`) and
to its own slot of the runtime's model cache (`scenekit.runtime.pool.MODELS`), so its models stay loaded
on its GPU from one render to the next while the other GPUs render other specs. With the Ray executor one
unbound worker feeds the cluster, whose actors hold the models. How a prepared render runs is a `Runner`:
`render` of the engine, which runs the executor the render's options name.
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
    device, for an executor that places the work itself); the store keeps the queue across restarts."""

    def __init__(
        self,
        project: Path,
        log_: EventLog,
        runner: Runner = render,
        devices: list[str | None] | None = None,
        base: RenderOptions | None = None,
    ):
        self.project = project
        self.events = log_
        self.store = log_.store
        self.runner = runner
        self.devices = devices or [None]
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
        """Stop the workers; renders they were running stay queued and resume (from the cache) on restart."""
        self._stopping.set()
        with self._lock:
            for cancellation in self._running.values():
                cancellation.cancel()
        self._wake.set()
        for thread in self._threads:
            thread.join()

    def submit(self, render_id: str, request: dict[str, Any], prepared: Prepared) -> list[dict[str, Any]]:
        """Queue a render whose spec was just prepared; its plan as JSON."""
        plan = plan_json(prepared.plan())
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
        """Worker `index`: on `device`, with its own models (slot `index` of the model cache), until stopped."""
        with ExitStack() as bindings:
            if device is not None:
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
                self._run(record)

    def _run(self, record: dict[str, Any]) -> None:
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
        self.events.emit(render_id, "render_started", {})
        try:
            prepared = self._prepared.pop(render_id, None) or prepare(
                self.project / record["request"]["spec_file"], render_options(record["request"]["options"], self.base)
            )
            result = self.runner(prepared, recorder, cancellation)
        except SpecError as exc:  # the spec changed on disk before a requeued render ran
            self._end(render_id, "failed", errors=[issue_json(i, self.project) for i in exc.issues])
        except RenderCancelled:
            recorder.stop_running("cancelled")
            if self._stopping.is_set() and render_id not in self._cancel_asked:
                self.store.update(render_id, state="queued")
                self.events.emit(render_id, "log", {"level": "info", "message": "server stopping: left queued"})
            else:
                self._end(render_id, "cancelled")
        except Exception as exc:
            log.debug("render %s failed", render_id, exc_info=exc)
            failed = recorder.stop_running("failed")
            message = str(exc) or exc.__class__.__name__
            self._end(render_id, "failed", errors=[{"node": failed[0] if failed else None, "message": message}])
        else:
            manifest = json.loads(result.manifest.read_text())
            self.store.update(render_id, output=relative(self.project, result.output), manifest=json.dumps(manifest))
            self._end(render_id, "done", seconds=round(time.perf_counter() - started, 3))
        finally:
            logging.getLogger("scenekit").removeHandler(handler)
            with self._lock:
                self._running.pop(render_id, None)
                self._cancel_asked.discard(render_id)

    def _end(self, render_id: str, state: str, errors: list[dict[str, Any]] | None = None, **data: Any) -> None:
        self.store.update(render_id, state=state, finished=time.time(), errors=errors or [])
        self.events.emit(render_id, f"render_{state}", {**data, "errors": errors or []})
