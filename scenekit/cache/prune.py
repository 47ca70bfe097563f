"""Choosing which cache entries to remove."""

from __future__ import annotations

import re
import time

from scenekit.cache.store import EntryInfo

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
