"""A render's events as the API serves them: recorded in the store in order, each node's status kept current.

`RenderRecorder` is the engine's `RenderEvents` interface turned into records: `planned`, `node_started`,
`node_step` (at most every `STEP_INTERVAL` seconds per node, and always the last step), `node_done`; the
queue adds `render_started`, `render_done`, `render_failed`, `render_cancelled` and `log`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scenekit.engine.plan import PlannedNode
from scenekit.graph.nodes import Node
from scenekit.server.store import Event, Store

STEP_INTERVAL = 0.1
TERMINAL = ("render_done", "render_failed", "render_cancelled")


def plan_json(plan: list[PlannedNode]) -> list[dict[str, Any]]:
    """The plan as the API shows it: each node's id, op, clip, key, status and reason, and the nodes it reads."""
    return [{**p.to_json(), "inputs": sorted(set(p.node.inputs.values()))} for p in plan]


class EventLog:
    """Appends events to the store, and keeps the events of the renders this process ran in memory, so that
    the SSE streams of a running render (any number of them) read memory, not the database."""

    def __init__(self, store: Store):
        self.store = store
        self._events: dict[str, list[Event]] = {}
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def emit(self, render_id: str, type_: str, data: dict[str, Any]) -> Event:
        with self._lock:
            if render_id not in self._events:  # e.g. a render queued again after a restart: its earlier events
                self._events[render_id] = self.store.events(render_id)
            event = self.store.add_event(render_id, type_, data)
            self._events[render_id].append(event)
            waiters = list(self._waiters)
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(waiter.set)
        return event

    @contextmanager
    def listening(self) -> Iterator[asyncio.Event]:
        """An asyncio event (of the running loop) set whenever any render emits one, while the block runs."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            yield waiter[1]
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def after(self, render_id: str, seen: int) -> list[Event] | None:
        """The events of a render this process emitted, after number `seen`; None for another render."""
        with self._lock:
            events = self._events.get(render_id)
            return None if events is None else events[seen:]


class RenderRecorder:
    """RenderEvents for one render: every event goes to the log, and the per-node status to the record."""

    def __init__(self, log: EventLog, render_id: str):
        self.log = log
        self.render_id = render_id
        self.nodes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # background nodes (segment encodes) report from their own thread
        self._last_step: dict[str, float] = {}

    def planned(self, plan: list[PlannedNode]) -> None:
        with self._lock:
            nodes = plan_json(plan)
            for node in nodes:
                status = "queued" if node["status"] == "run" else "cached"
                self.nodes[node["id"]] = {**node, "status": status, "step": None, "seconds": None}
            self._save()
            self.store_plan(nodes)
            self.log.emit(self.render_id, "planned", {"nodes": nodes})

    def node_started(self, node: Node, position: int, total: int) -> None:
        with self._lock:
            self.nodes[node.id].update(status="running", started=time.time())
            self._save()
            self.log.emit(self.render_id, "node_started", {"node": node.id, "position": position, "total": total})

    def node_step(self, node: Node, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.nodes[node.id]["step"] = [done, total]
            if done < total and now - self._last_step.get(node.id, 0.0) < STEP_INTERVAL:
                return
            self._last_step[node.id] = now
            self._save()
            self.log.emit(self.render_id, "node_step", {"node": node.id, "done": done, "total": total})

    def node_finished(self, node: Node, seconds: float) -> None:
        with self._lock:
            self.nodes[node.id].update(status="done", seconds=seconds)
            self._save()
            self.log.emit(self.render_id, "node_done", {"node": node.id, "seconds": round(seconds, 4)})

    def closed(self) -> None:
        pass

    def stop_running(self, status: str) -> list[str]:
        """Mark the nodes still running `failed` or `cancelled` (the render ended under them); their ids."""
        with self._lock:
            stopped = [node_id for node_id, node in self.nodes.items() if node["status"] == "running"]
            for node_id in stopped:
                self.nodes[node_id]["status"] = status
            self._save()
        return stopped

    def store_plan(self, nodes: list[dict[str, Any]]) -> None:
        """The plan the render runs (it can differ from the one queued when the cache changed since)."""
        self.log.store.update(self.render_id, plan=nodes)

    def _save(self) -> None:
        self.log.store.update(self.render_id, nodes=self.nodes)


class ThreadLogHandler(logging.Handler):
    """Log records of one thread (a render worker's) as `log` events of the render it runs."""

    def __init__(self, log: EventLog, render_id: str):
        super().__init__(logging.INFO)
        self.log = log
        self.render_id = render_id
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            text = record.getMessage()
        except Exception:  # a bad format string in someone's log call must not fail the render
            text = str(record.msg)
        self.log.emit(self.render_id, "log", {"level": record.levelname.lower(), "message": text})
