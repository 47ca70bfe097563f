"""Asset files a spec reads: resolved, checked, and hashed by content."""

from __future__ import annotations

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


def check_image(path: Path) -> None:
    """Raise ValueError unless `path` is an image Pillow can read."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path.name} is not a readable image ({exc.__class__.__name__})") from None


def check_video(path: Path) -> int:
    """Raise ValueError unless `path` is a video PyAV can decode; returns its frame count."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path.name} has no video stream")
            known = container.streams.video[0].frames
            return known if known > 0 else sum(1 for _ in container.decode(video=0))
    except av.FFmpegError as exc:
        raise ValueError(f"{path.name} is not a readable video ({exc.__class__.__name__})") from None
