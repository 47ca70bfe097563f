"""A content-addressed store of node outputs on disk.

Each entry is a folder `objects/<k[:2]>/<key>/` with the node's output files and `entry.json`
(the key, the op, and every file's size and sha256). An entry is built in `tmp/` and renamed
into place in one step, so a crash never leaves a half-written entry; checksums are verified
on read and a corrupt entry is dropped so the node runs again.

Renders and watchers in several processes may share one cache. A key is computed under its lock
(`locks/<key>.lock`): whoever finds the lock held waits, then reads the entry the holder committed.
An intact committed entry is never moved or replaced, since others may be reading it; a corrupt one
is removed under its key's lock. Nothing is followed out of the cache: a link where the store expects
one of its folders or files is removed (the link, never what it points to) or treated as corrupt.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scenekit.cache.locks import KeyLock
from scenekit.cache.prune import is_stale_work, work_name
from scenekit.fsutil import is_real_dir, is_real_file, remove_tree
from scenekit.hashing import file_sha256

ENTRY_FILE = "entry.json"
_KEY = re.compile(r"[0-9a-f]{64}")

log = logging.getLogger(__name__)


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

    def entry_dir(self, key: str) -> Path:
        """Where entry `key` lives (whether or not it is stored)."""
        return self.root / "objects" / _checked(key)[:2] / key

    def has(self, key: str) -> bool:
        """Whether an entry is stored (not yet verified), reached without following a link."""
        folder = self.entry_dir(key)
        return all(is_real_dir(p) for p in (folder.parent.parent, folder.parent, folder)) and is_real_file(
            folder / ENTRY_FILE
        )

    def open(self, key: str) -> Path | None:
        """The folder of a verified entry, or None if absent or corrupt (a corrupt entry is removed)."""
        if not self.has(key):
            return None
        if self._verify(key):
            return self._touch(key)
        with self._locked(
            key, f"corrupt entry {key[:12]}"
        ):  # its node may be running again elsewhere now: look again under the lock
            if not self.has(key):
                return None
            if self._verify(key):
                return self._touch(key)
            try:
                self._drop_corrupt(key)
            except OSError as exc:  # e.g. a read-only cache: the caller sees it corrupt again and gives up in time
                log.warning("could not remove the corrupt cache entry %s: %s", self.entry_dir(key), exc)
        return None

    def claim(self, key: str, *, op: str, node: str, waiting: Callable[[], None] = lambda: None) -> Path | StagedEntry:
        """The verified entry for `key`, or a work folder to build it in.

        Takes the key's lock first; while another render holds it (it is computing the node), waits,
        calling `waiting` at every poll (it may raise to give up), and then usually finds its entry.
        A staged entry keeps the lock until it is committed or discarded.
        """
        lock = self._key_lock(key)
        self._acquire(lock, node, waiting)
        try:
            if self.has(key) and self._verify(key) and (folder := self._touch(key)) is not None:
                lock.release()
                return folder
            if self.has(key):
                self._drop_corrupt(key)
            workdir = self._own_dir("tmp") / work_name(key)
            workdir.mkdir()
        except BaseException:
            lock.release()
            raise
        return StagedEntry(self, workdir, key, op, node, time.time(), lock)

    def recorded_sha256(self, key: str, name: str) -> str:
        """The sha256 that entry `key` records for its file `name` (verified when the entry was opened)."""
        entry = json.loads((self.entry_dir(key) / ENTRY_FILE).read_text())
        return entry["files"][name]["sha256"]

    def remove(self, key: str) -> None:
        """Delete an entry under its key's lock (moved aside first, so no reader sees it half-deleted)."""
        with self._locked(key, f"entry {key[:12]}"):
            self._drop(key)

    def clean_stale(self) -> int:
        """Remove work folders left by processes that died (e.g. a killed render), never another host's work in
        progress (`is_stale_work`), and lock files no process holds (a process killed between committing an
        entry and releasing its key's lock leaves the file); returns how many work folders and lock files."""
        if not self.root.is_dir():
            return 0
        tmp = self._own_dir("tmp")
        now = time.time()
        stale = [Path(item.path) for item in os.scandir(tmp) if is_stale_work(item.name, _unchanged_for(item, now))]
        for path in stale:
            remove_tree(path)
        if stale:
            log.info("removed %d stale work folder(s) from %s", len(stale), tmp)
        return len(stale) + self._drop_free_locks()

    def _drop_free_locks(self) -> int:
        """Delete the lock files nobody holds, as taking and releasing each lock does; how many."""
        locks = self.root / "locks"
        if not is_real_dir(locks):
            return 0
        dropped = 0
        for item in os.scandir(locks):
            if item.name.endswith(".lock") and item.is_file(follow_symlinks=False):
                lock = KeyLock(Path(item.path))
                if lock.try_acquire():
                    lock.release()
                    dropped += 1
        return dropped

    def entries(self) -> Iterator[EntryInfo]:
        """Every stored entry (links in the cache are not followed)."""
        for folder in _real_subfolders(self.root / "objects", depth=2):
            entry_file = folder / ENTRY_FILE
            if not _KEY.fullmatch(folder.name) or not is_real_file(entry_file):
                continue
            try:
                last_used = entry_file.stat().st_mtime
                entry = json.loads(entry_file.read_text())
                size = sum(f["size"] for f in entry["files"].values())
            except FileNotFoundError:
                continue  # removed just now
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                entry, size = {}, 0
            yield EntryInfo(folder.name, entry.get("op", "?"), entry.get("node", "?"), size, last_used)

    def _commit(self, staged: StagedEntry) -> Path:
        """Checksum, write `entry.json`, rename into place (the caller holds the key's lock)."""
        files = {}  # no fsync: a torn entry after a crash fails its checksum and is recomputed
        for path in sorted(staged.workdir.iterdir()):
            files[path.name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
        entry = {
            "key": staged.key,
            "op": staged.op,
            "node": staged.node,
            "created": time.time(),
            "seconds": round(time.time() - staged.started, 3),
            "files": files,
        }
        (staged.workdir / ENTRY_FILE).write_text(json.dumps(entry, indent=1))
        target = self.entry_dir(staged.key)
        self._own_dir("objects", staged.key[:2])
        if os.path.lexists(target):
            if self.has(staged.key) and self._verify(
                staged.key
            ):  # committed by a process that did not wait for the lock: keep it, others may be reading it
                return target
            self._drop_corrupt(staged.key)
        try:
            os.rename(staged.workdir, target)
        except OSError:
            if not (self.has(staged.key) and self._verify(staged.key)):
                raise
            return target  # as above, committed just now
        self._verified[staged.key] = _stamp(target)
        return target

    def _verify(self, key: str) -> bool:
        """Whether entry `key` is intact, hashing its files only when they changed since they last matched."""
        folder = self.entry_dir(key)
        try:
            stamp = _stamp(folder)
        except OSError:
            return False
        if self._verified.get(key) == stamp:
            return True
        if not _intact(folder, key):
            return False
        self._verified[key] = stamp
        return True

    def _touch(self, key: str) -> Path | None:
        """Mark an entry used (for least-recently-used pruning); None if it was removed just now."""
        folder = self.entry_dir(key)
        try:
            os.utime(folder / ENTRY_FILE, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return folder

    def _drop_corrupt(self, key: str) -> None:
        log.warning("cache entry %s is corrupt: removing it, its node runs again", self.entry_dir(key))
        self._drop(key)

    def _drop(self, key: str) -> None:
        """Move an entry aside into `tmp/` and delete it there (the caller holds the key's lock)."""
        folder = self._own_dir("objects", key[:2]) / key
        self._verified.pop(key, None)
        if not os.path.lexists(folder):
            return
        trash = self._own_dir("tmp") / work_name(f"removed-{key}")
        os.rename(folder, trash)  # a link is moved itself, not what it points to
        remove_tree(trash)

    def _own_dir(self, *parts: str) -> Path:
        """The cache's folder `root/parts...`, created if missing; a link or file in the way is removed first."""
        path = self.root
        path.mkdir(parents=True, exist_ok=True)
        for part in parts:
            path = path / part
            if not is_real_dir(path):
                if os.path.lexists(path) and not is_real_dir(path):  # not made just now by another process
                    log.warning(
                        "%s in the cache is a link or a file, not a folder: removed it (not what it points to)", path
                    )
                    path.unlink(missing_ok=True)
                path.mkdir(exist_ok=True)
        return path

    def _key_lock(self, key: str) -> KeyLock:
        return KeyLock(self._own_dir("locks") / f"{_checked(key)}.lock")

    def _acquire(self, lock: KeyLock, what: str, waiting: Callable[[], None]) -> None:
        if lock.try_acquire():
            return
        log.info("waiting for %s: another render holds its lock %s (%s)", what, lock.path, lock.holder())
        started = time.monotonic()
        lock.acquire(waiting)
        log.info("got the lock for %s after %.1fs", what, time.monotonic() - started)

    @contextmanager
    def _locked(self, key: str, what: str) -> Iterator[None]:
        lock = self._key_lock(key)
        self._acquire(lock, what, lambda: None)
        try:
            yield
        finally:
            lock.release()


@dataclass
class StagedEntry:
    """An entry being built in its work folder, holding its key's lock: `commit` renames it into place,
    `discard` deletes it; either releases the lock."""

    store: CacheStore
    workdir: Path
    key: str
    op: str
    node: str
    started: float
    lock: KeyLock

    def commit(self) -> Path:
        """Checksum every file, write `entry.json`, rename into place; returns the entry's folder."""
        try:
            return self.store._commit(self)
        finally:
            self.discard()

    def discard(self) -> None:
        """Delete the work folder (if still there) and release the key's lock."""
        remove_tree(self.workdir)
        self.lock.release()


def _intact(folder: Path, key: str) -> bool:
    """Whether every file `entry.json` lists is a regular file of its recorded size and sha256."""
    try:
        entry = json.loads((folder / ENTRY_FILE).read_text())
        if entry.get("key") != key:
            return False
        for name, expected in entry["files"].items():
            path = folder / name
            if name != path.name or not is_real_file(path):  # no `../x`, no links out of the entry
                return False
            if path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def _stamp(folder: Path) -> tuple:
    """What an entry's files look like on disk (names, sizes, modification times), without reading them."""
    return tuple(sorted((e.name, *_size_and_mtime(e)) for e in os.scandir(folder) if e.name != ENTRY_FILE))


def _size_and_mtime(entry: os.DirEntry) -> tuple[int, int]:
    info = entry.stat(follow_symlinks=False)
    return info.st_size, info.st_mtime_ns


def _real_subfolders(folder: Path, depth: int) -> Iterator[Path]:
    """Folders `depth` levels below `folder`, not reached through links."""
    if not is_real_dir(folder):
        return
    for item in os.scandir(folder):
        if not item.is_dir(follow_symlinks=False):
            continue
        if depth == 1:
            yield Path(item.path)
        else:
            yield from _real_subfolders(Path(item.path), depth - 1)


def _unchanged_for(item: os.DirEntry, now: float) -> float:
    """Seconds since `item` last changed (0 if it is gone: its owner just committed or removed it)."""
    try:
        return now - item.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0


def _checked(key: str) -> str:
    """`key`, if it is a key (64 hex digits: it names files and folders)."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a cache key: {key!r}")
    return key
