"""Asset files a spec reads: resolved, checked, and hashed by content."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class Asset:
    """A file as written in the spec, where it is, and the hash of its bytes."""

    written: str
    path: Path
    sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path: Path) -> str:
    """`file_sha256`, computed once per version (size and mtime) of the file: specs are prepared again on
    every watch reload, twice with a preview pass, and name the same assets and weights each time."""
    stat = path.stat()
    return _sha256_of_version(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256_of_version(path: Path, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def check_image(path: Path) -> None:
    """Raise ValueError unless `path` is an image Pillow can read."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path.name} is not a readable image ({exc.__class__.__name__})") from None


def check_video(path: Path) -> int:
    """Raise ValueError unless `path` is a video PyAV can decode; returns its frame count (found once per
    version of the file: without a count in the container it means decoding every frame)."""
    stat = path.stat()
    return _video_frames(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _video_frames(path: Path, size: int, mtime_ns: int) -> int:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path.name} has no video stream")
            known = container.streams.video[0].frames
            return known if known > 0 else sum(1 for _ in container.decode(video=0))
    except av.FFmpegError as exc:
        raise ValueError(f"{path.name} is not a readable video ({exc.__class__.__name__})") from None
