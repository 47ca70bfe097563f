"""Locks on cache keys, so no two processes (or threads, or hosts sharing the cache) compute or replace one
entry at once.

On a cache shared over NFS, Linux carries `flock` to the server (as a POSIX lock), so hosts exclude each
other too and a dead host's locks go when its lease expires. The holder writes `HOST PID` into the lock
file, so a waiter can say who it waits for.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.05
_OPEN = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
"""This machine's name as the cache writes it (in lock files and work folder names: no dots)."""


class KeyLock:
    """An exclusive `flock` on one lock file (`locks/<key>.lock` in the cache).

    flock locks belong to an open file, so two threads of one process exclude each other too, and
    the kernel drops a lock when its process dies (even by `kill -9`). The holder deletes the file
    before unlocking it, so the folder holds only the locks in use; a process that locks a file the
    holder has just deleted notices (the path no longer names it) and tries again.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False if another open file holds it."""
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            if _names(self.path, fd):
                self._fd = fd
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{HOST} {os.getpid()}\n".encode(), 0)
                return True
            os.close(fd)  # its holder deleted it as we locked it: lock the file there now

    def acquire(self, waiting: Callable[[], None]) -> None:
        """Take the lock, polling until it is free; `waiting` runs before every retry (it may raise to give up)."""
        while not self.try_acquire():
            waiting()
            time.sleep(POLL_SECONDS)

    def holder(self) -> str:
        """`HOST PID` of whoever holds the lock (as it wrote it), or `?` when unknown."""
        try:
            with open(self.path, "rb", opener=lambda path, flags: os.open(path, flags | os.O_NOFOLLOW)) as file:
                return file.read(200).decode(errors="replace").strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        """Delete the lock file and unlock it (a no-op when not held)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def _open(self) -> int:
        while True:
            try:
                return os.open(self.path, _OPEN, 0o666)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                self.path.unlink(
                    missing_ok=True
                )  # a link planted in place of the lock file: remove it, never follow it


def _names(path: Path, fd: int) -> bool:
    """Whether `path` is still the file open as `fd`."""
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)
