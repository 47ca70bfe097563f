"""The server's records in SQLite (`.scenekit/server.db` in the project): renders, their queue order and events.

Every write is one short transaction on its thread's connection, so request threads and render workers share
the file safely; the queue and each render's record survive a restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS renders (
    queue INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    plan TEXT NOT NULL DEFAULT '[]',
    nodes TEXT NOT NULL DEFAULT '{}',
    errors TEXT NOT NULL DEFAULT '[]',
    output TEXT,
    manifest TEXT,
    started REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS events (
    render_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (render_id, seq)
);
"""

_JSON_COLUMNS = ("request", "plan", "nodes", "errors")


@dataclass(frozen=True)
class Event:
    """One event of a render, numbered from 1 in the order it happened."""

    seq: int
    time: float
    type: str
    data: dict[str, Any]


class Store:
    """Render records and their events in one SQLite file."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one writer at a time in this process (SQLite serialises processes)
        self._local = threading.local()  # a connection per thread, kept open
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, in a transaction (committed at the end of the block)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: safe across crashes, no fsync per event
            self._local.db = db
        with db:
            yield db

    def add(self, render_id: str, request: dict[str, Any], plan: list[dict[str, Any]]) -> None:
        """Queue a new render."""
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT INTO renders (id, created, state, request, plan) VALUES (?, ?, 'queued', ?, ?)",
                (render_id, time.time(), json.dumps(request), json.dumps(plan)),
            )

    def get(self, render_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM renders WHERE id = ?", (render_id,)).fetchone()
        return _record(row) if row is not None else None

    def recent(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest renders first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM renders ORDER BY queue DESC LIMIT ?", (limit,)).fetchall()
        return [_record(row) for row in rows]

    def claim_next(self) -> dict[str, Any] | None:
        """The oldest queued render, now marked running; None when the queue is empty."""
        with self._lock, self._connect() as db:
            row = db.execute(
                "UPDATE renders SET state = 'running', started = ? WHERE queue = "
                "(SELECT queue FROM renders WHERE state = 'queued' ORDER BY queue LIMIT 1) RETURNING *",
                (time.time(),),
            ).fetchone()
        return _record(row) if row is not None else None

    def update(self, render_id: str, **fields: Any) -> None:
        """Set columns of a render (JSON columns take Python values)."""
        names = sorted(fields)
        values = [json.dumps(fields[n]) if n in _JSON_COLUMNS else fields[n] for n in names]
        with self._lock, self._connect() as db:
            db.execute(
                f"UPDATE renders SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",  # names are ours
                (*values, render_id),
            )

    def cancel_queued(self, render_id: str) -> bool:
        """Mark a queued render cancelled; False if it was not queued (any more)."""
        with self._lock, self._connect() as db:
            changed = db.execute(
                "UPDATE renders SET state = 'cancelled', finished = ? WHERE id = ? AND state = 'queued'",
                (time.time(), render_id),
            ).rowcount
        return changed == 1

    def requeue_interrupted(self) -> list[str]:
        """Renders left running by a server that stopped go back to the queue (the cache keeps their work)."""
        with self._lock, self._connect() as db:
            rows = db.execute("UPDATE renders SET state = 'queued' WHERE state = 'running' RETURNING id").fetchall()
        return [row["id"] for row in rows]

    def add_event(self, render_id: str, type_: str, data: dict[str, Any]) -> Event:
        """Append an event; its number is one more than the render's last."""
        now = time.time()
        with self._lock, self._connect() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE render_id = ?", (render_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO events (render_id, seq, time, type, data) VALUES (?, ?, ?, ?, ?)",
                (render_id, last + 1, now, type_, json.dumps(data)),
            )
        return Event(last + 1, now, type_, data)

    def events(self, render_id: str, after: int = 0) -> list[Event]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT seq, time, type, data FROM events WHERE render_id = ? AND seq > ? ORDER BY seq",
                (render_id, after),
            ).fetchall()
        return [Event(row["seq"], row["time"], row["type"], json.loads(row["data"])) for row in rows]


def _record(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    for name in _JSON_COLUMNS:
        record[name] = json.loads(record[name])
    record["manifest"] = json.loads(record["manifest"]) if record["manifest"] else None
    record.pop("queue")
    return record
