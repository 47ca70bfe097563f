"""A content-addressed store of node outputs on disk.

Each entry is a folder `objects/<k[:2]>/<key>/` with the node's output files and `entry.json`
(the key, the op, and every file's size and sha256). An entry is built in `tmp/` and renamed
into place in one step, so a crash never leaves a half-written entry; checksums are verified
on read and a corrupt entry is dropped so the node runs again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scenekit.spec.assets import file_sha256

ENTRY_FILE = "entry.json"


@dataclass(frozen=True)
class EntryInfo:
    """What `scenekit cache` shows of one entry."""

    key: str
    op: str
    node: str
    size: int
    last_used: float


class CacheStore:
    """Node outputs by content key."""

    def __init__(self, root: Path):
        self.root = root
        self._verified: dict[str, tuple] = {}  # key -> the files' (name, size, mtime) when their checksums matched

    def _entry_dir(self, key: str) -> Path:
        return self.root / "objects" / key[:2] / key

    def has(self, key: str) -> bool:
        """Whether an entry is stored (not yet verified)."""
        return (self._entry_dir(key) / ENTRY_FILE).is_file()

    def open(self, key: str) -> Path | None:
        """The folder of a verified entry, or None if absent or corrupt (a corrupt entry is removed)."""
        folder = self._entry_dir(key)
        if not (folder / ENTRY_FILE).is_file():
            return None
        stamp = _stamp(folder)
        if self._verified.get(key) != stamp:  # never checked, or a file changed since: hash the files again
            if not self._intact(folder, key):
                self.remove(key)
                return None
            self._verified[key] = stamp
        os.utime(folder / ENTRY_FILE)
        return folder

    def recorded_sha256(self, key: str, name: str) -> str:
        """The sha256 that entry `key` records for its file `name` (verified when the entry was opened)."""
        entry = json.loads((self._entry_dir(key) / ENTRY_FILE).read_text())
        return entry["files"][name]["sha256"]

    def _intact(self, folder: Path, key: str) -> bool:
        try:
            entry = json.loads((folder / ENTRY_FILE).read_text())
            if entry.get("key") != key:
                return False
            for name, expected in entry["files"].items():
                path = folder / name
                if path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
                    return False
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True

    def begin(self, key: str, *, op: str, node: str) -> StagedEntry:
        """A fresh work folder for `key`'s entry; nothing is visible until `commit`."""
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        workdir = tmp_root / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        workdir.mkdir()
        return StagedEntry(self, workdir, key, op, node, time.time())

    def _commit(self, staged: StagedEntry) -> Path:
        files = {}  # no fsync: a torn entry after a crash fails its checksum and is recomputed
        for path in sorted(staged.workdir.iterdir()):
            files[path.name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
        entry = {"key": staged.key, "op": staged.op, "node": staged.node, "created": time.time(),
                 "seconds": round(time.time() - staged.started, 3), "files": files}
        (staged.workdir / ENTRY_FILE).write_text(json.dumps(entry, indent=1))
        target = self._entry_dir(staged.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.remove(staged.key)  # a stale entry (e.g. a corrupt one) goes aside first, as readers expect
        try:
            os.rename(staged.workdir, target)
        except OSError:
            if not (target / ENTRY_FILE).is_file():
                raise  # else another process committed the same key just now: its entry is as good
        self._verified[staged.key] = _stamp(target)
        return target

    def remove(self, key: str) -> None:
        """Delete an entry (moved aside first so no reader sees it half-deleted)."""
        folder = self._entry_dir(key)
        if not folder.exists():
            return
        trash = self.root / "tmp" / f"removed.{key}.{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        self._verified.pop(key, None)

    def clean_stale(self) -> int:
        """Remove work folders left by processes that died (e.g. a killed render); returns how many."""
        removed = 0
        for folder in (self.root / "tmp").glob("*") if (self.root / "tmp").is_dir() else []:
            parts = folder.name.split(".")
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            if pid is None or not _alive(pid):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def entries(self) -> Iterator[EntryInfo]:
        """Every stored entry."""
        objects = self.root / "objects"
        if not objects.is_dir():
            return
        for entry_file in objects.glob(f"*/*/{ENTRY_FILE}"):
            try:
                entry = json.loads(entry_file.read_text())
                size = sum(f["size"] for f in entry["files"].values())
            except (OSError, ValueError, KeyError, TypeError):
                entry, size = {}, 0
            yield EntryInfo(entry_file.parent.name, entry.get("op", "?"), entry.get("node", "?"), size, entry_file.stat().st_mtime)


@dataclass
class StagedEntry:
    """An entry being built in its work folder: `commit` renames it into place, `discard` deletes it."""

    store: CacheStore
    workdir: Path
    key: str
    op: str
    node: str
    started: float

    def commit(self) -> Path:
        """Checksum every file, write `entry.json`, rename into place; returns the entry's folder."""
        try:
            return self.store._commit(self)
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _stamp(folder: Path) -> tuple:
    """What an entry's files look like on disk (names, sizes, modification times), without reading them."""
    return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.name != ENTRY_FILE))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
