"""Watch a set of files with watchdog; report a batch once saves settle and content really changed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED_NO_WRITE,
    EVENT_TYPE_OPENED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from scenekit.spec.assets import cached_sha256

DEBOUNCE_SECONDS = 0.1
_READS = {EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE}  # reading a file (as a render does) is no save


def content_hashes(paths: Iterable[Path]) -> dict[Path, str | None]:
    """sha256 of each file, None where it is missing or unreadable; read again only when its size or
    mtime changed (a batch of saves re-hashes the saved files, not a multi-GB LoRA beside them)."""
    hashes: dict[Path, str | None] = {}
    for path in paths:
        try:
            hashes[path] = cached_sha256(path)
        except OSError:
            hashes[path] = None
    return hashes


class FileWatcher(FileSystemEventHandler):
    """Watches the folders of a set of files; `wait_for_change` returns the files whose bytes changed.

    Editors save in odd ways (twice, via a temp file and a rename, or touch without a change):
    events are collected until none came for DEBOUNCE_SECONDS, then compared by content hash,
    so one save gives one batch and an unchanged save none.
    """

    def __init__(self, files: Iterable[Path]):
        super().__init__()
        self._observer = Observer()
        self._dirty = threading.Event()
        self._last_event = 0.0
        self._lock = threading.Lock()
        self._watched: set[Path] = set()
        self._scheduled: set[Path] = set()
        self._hashes: dict[Path, str | None] = {}
        self._touched: set[Path] = set()
        self._rearmed = False
        self.set_files(files)

    def set_files(self, files: Iterable[Path]) -> None:
        """Watch exactly these files (the spec, its includes and its assets) from now on.

        Files already watched keep the content they were last compared at, so a save made while the
        caller was reading them still counts as a change; only newly watched files are hashed here.
        """
        with self._lock:
            self._watched = {f.resolve() for f in files}
            kept = {path: digest for path, digest in self._hashes.items() if path in self._watched}
            self._hashes = kept | content_hashes(self._watched - kept.keys())
            for folder in {f.parent for f in self._watched} - self._scheduled:
                if folder.is_dir():
                    self._observer.schedule(self, str(folder), recursive=False)
                    self._scheduled.add(folder)

    def add_files(self, files: Iterable[Path]) -> None:
        """Watch these files as well as those watched now."""
        with self._lock:
            watched = set(self._watched)
        self.set_files([*watched, *files])

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def rearm(self) -> None:
        """Count the next save of any watched file as a change even if its content is the same (so a
        failed render is tried again when the user saves)."""
        with self._lock:
            self._rearmed = True

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _READS:
            return
        touched = {Path(str(event.src_path)).resolve()}
        if getattr(event, "dest_path", None):
            touched.add(Path(str(event.dest_path)).resolve())
        with self._lock:
            touched &= self._watched
            self._touched |= touched
        if touched:
            self._last_event = time.monotonic()
            self._dirty.set()

    def wait_for_change(self, timeout: float | None = None) -> list[Path] | None:
        """Block until watched files changed content (or, after `rearm`, were saved at all); returns them,
        or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._dirty.wait(remaining):
                return None
            while time.monotonic() - self._last_event < DEBOUNCE_SECONDS:
                time.sleep(DEBOUNCE_SECONDS / 4)
            self._dirty.clear()
            with self._lock:
                now = content_hashes(self._watched)
                changed = sorted(p for p in self._watched if now[p] != self._hashes.get(p))
                if not changed and self._rearmed:
                    changed = sorted(self._touched & self._watched)
                self._hashes, self._touched = now, set()
                self._rearmed = self._rearmed and not changed
            if changed:
                return changed
