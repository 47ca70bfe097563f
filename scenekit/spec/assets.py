"""Asset files a spec reads, hashed by content (they are checked by `scenekit.media.probe`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from scenekit.hashing import file_sha256


@dataclass(frozen=True)
class Asset:
    """A file as written in the spec, where it is, and the hash of its bytes."""

    written: str
    path: Path
    sha256: str


def cached_sha256(path: Path) -> str:
    """`file_sha256`, computed once per version (size and mtime) of the file: specs are prepared again on
    every watch reload, twice with a preview pass, and name the same assets and weights each time."""
    stat = path.stat()
    return _sha256_of_version(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256_of_version(path: Path, size: int, mtime_ns: int) -> str:
    return file_sha256(path)
