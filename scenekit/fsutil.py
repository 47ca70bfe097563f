"""Safe file operations: atomic writes through exclusively created temp files, and deletion that
never follows a link (infrastructure: imports nothing from scenekit)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TOKEN_BYTES = 8
TEMP_NAME_ROOM = len(f"..{'0' * 2 * _TOKEN_BYTES}.tmp")
"""Bytes the temp file of an atomic write adds to its target's name (`.NAME.RANDOM.tmp`)."""
_COPY_BLOCK = 1 << 20

log = logging.getLogger(__name__)


def atomic_write_text(target: Path, text: str) -> None:
    """Write `text` to a new temp file beside `target`, then rename it over `target`."""
    with _replacing(target) as handle:
        handle.write(text.encode("utf-8"))


def atomic_copy(source: Path, target: Path) -> None:
    """Copy `source` to a new temp file beside `target`, then rename it over `target`."""
    with source.open("rb") as reader, _replacing(target) as handle:
        shutil.copyfileobj(reader, handle, _COPY_BLOCK)


@contextmanager
def _replacing(target: Path) -> Iterator[BinaryIO]:
    """A new file beside `target`, renamed over it when the block succeeds and deleted when it fails.

    The temp file has an unpredictable name and is created exclusively without following links, so
    nothing planted beside `target` can redirect the write; the rename replaces `target` itself (a
    link planted there is replaced, never written through).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp, fd = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _create_temp(target: Path) -> tuple[Path, int]:
    """Create `.NAME.RANDOM.tmp` beside `target` (O_EXCL|O_NOFOLLOW; the umask sets its mode)."""
    while True:
        temp = target.parent / f".{target.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp"
        try:
            return temp, os.open(temp, _CREATE_NEW, 0o666)
        except FileExistsError:
            continue


def remove_tree(path: Path) -> None:
    """Delete a file, link or folder; a link is removed itself, never what it points to (also inside the folder)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(
            path, ignore_errors=True
        )  # fd-based on Linux: never follows links inside (rmtree.avoids_symlink_attacks)
        if os.path.lexists(path):
            log.warning("could not remove all of %s", path)
    else:
        path.unlink(missing_ok=True)


def is_real_dir(path: Path) -> bool:
    """Whether `path` is a folder and not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def is_real_file(path: Path) -> bool:
    """Whether `path` is a regular file and not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
