"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _temp_beside(target: Path) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.tmp"


def atomic_write_text(target: Path, text: str) -> None:
    """Write `text` to a temp file beside `target`, then rename it over `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_beside(target)
    try:
        with temp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def atomic_copy(source: Path, target: Path) -> None:
    """Copy `source` to a temp file beside `target`, then rename it over `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_beside(target)
    try:
        shutil.copyfile(source, temp)
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
