"""The render queue: a worker thread takes queued renders in order from the store and runs them.

Models stay loaded between renders because the worker lives in the server's process (the runtime's model
cache, `scenekit.runtime.pool.MODELS`). How a prepared render runs is a `Runner`: `render` of the engine
here; another executor (e.g. Ray, which spreads a render's nodes over the GPUs) plugs in by passing its own
runner to `RenderQueue`. One worker per GPU in this process would need the model cache to be per device
and thread-safe, which it is not yet: renders run one at a time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scenekit.engine.events import RenderEvents
from scenekit.engine.execute import Cancellation
from scenekit.engine.session import Prepared, RenderOptions, RenderResult, prepare, render
from scenekit.errors import RenderCancelled, SpecError
from scenekit.server.events import EventLog, RenderRecorder, ThreadLogHandler, plan_json
from scenekit.server.specs import issue_json, relative

log = logging.getLogger(__name__)

Runner = Callable[[Prepared, RenderEvents, Cancellation], RenderResult]
"""Runs a prepared render to its output, reporting events and honouring cancellation."""


def render_options(options: dict[str, Any]) -> RenderOptions:
    """The engine's options from a request's stored `options` (model, size, vars); nothing may leave the project."""
    size = options.get("size")
    return RenderOptions(
        model=options.get("model"),
        size=(size[0], size[1]) if size else None,
        variables=dict(options.get("vars") or {}),
    )


class RenderQueue:
    """Queued renders run one at a time, oldest first; the store keeps the queue across restarts."""

    def __init__(self, project: Path, log_: EventLog, runner: Runner = render):
        self.project = project
        self.events = log_
        self.store = log_.store
        self.runner = runner
        self._wake = threading.Event()  # set when there may be a render to take
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._prepared: dict[str, Prepared] = {}
        self._running: dict[str, Cancellation] = {}
        self._cancel_asked: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Put renders a stopped server left running back in the queue, then start the worker."""
        for render_id in self.store.requeue_interrupted():
            self.events.emit(render_id, "log", {"level": "info", "message": "server restarted: queued again"})
        self._stopping.clear()
        self._thread = threading.Thread(target=self._work, name="scenekit-render", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker; a render it was running stays queued and resumes (from the cache) on restart."""
        self._stopping.set()
        with self._lock:
            for cancellation in self._running.values():
                cancellation.cancel()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

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

    def _work(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before looking: a render queued from here on sets it again
            record = self.store.claim_next()
            if record is None:
                self._wake.wait(timeout=1.0)
                continue
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
                self.project / record["request"]["spec_file"], render_options(record["request"]["options"])
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
