"""Choosing which cache entries, and which work folders left by dead renders, to remove."""

from __future__ import annotations

import os
import re
import time
import uuid
from typing import TYPE_CHECKING

from scenekit.cache.locks import HOST

if TYPE_CHECKING:
    from scenekit.cache.store import EntryInfo

FOREIGN_STALE_SECONDS = 24 * 3600.0
"""A work folder of another host is left alone until it is unchanged this long (its process cannot be asked)."""

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)?\s*$", re.IGNORECASE)
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_age(text: str) -> float:
    """`7d` -> seconds."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not an age; write 30m, 12h, 7d or 2w")
    return float(match[1]) * _AGE_SECONDS[match[2]]


def parse_size_bytes(text: str) -> int:
    """`20GB` -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a size; write 500MB or 20GB")
    return int(float(match[1]) * _SIZE_BYTES[(match[2] or "B").upper()])


def select_for_pruning(
    entries: list[EntryInfo],
    *,
    kept: set[str],
    everything: bool = False,
    older_than: float | None = None,
    max_size: int | None = None,
    now: float | None = None,
) -> list[EntryInfo]:
    """Entries to remove: all, those unused for `older_than` seconds, then least recently used beyond `max_size`."""
    now = time.time() if now is None else now
    candidates = [e for e in entries if e.key not in kept]
    if everything:
        return candidates
    victims = [e for e in candidates if older_than is not None and now - e.last_used > older_than]
    if max_size is not None:
        remaining = sum(e.size for e in entries) - sum(e.size for e in victims)
        for entry in sorted((e for e in candidates if e not in victims), key=lambda e: e.last_used):
            if remaining <= max_size:
                break
            victims.append(entry)
            remaining -= entry.size
    return victims


def work_name(label: str) -> str:
    """`LABEL.HOST.PID.RANDOM`: a work folder's name in `tmp/`, naming the host and process that own it."""
    return f"{label}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def is_stale_work(name: str, age: float, host: str = HOST) -> bool:
    """Whether the work folder `name`, unchanged for `age` seconds, was left by a render that is gone: one
    of this host whose process is dead (or a name no render writes), or one of another host unchanged for
    `FOREIGN_STALE_SECONDS` (that host may still be working in it: a shared cache)."""
    parts = name.split(".")
    if len(parts) == 3 and parts[1].isdigit():  # `LABEL.PID.RANDOM`, as earlier versions wrote it: this host's
        parts.insert(1, host)
    if len(parts) != 4 or not parts[2].isdigit():
        return True
    if parts[1] != host:
        return age > FOREIGN_STALE_SECONDS
    return not _alive(int(parts[2]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
