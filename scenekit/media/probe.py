"""Image and video files read safely: sizes from headers first, a bound on pixels, and every problem
(unreadable, corrupt, too large) as a ValueError that says what is wrong.

A header declares the size before anything is decoded, so a small file that would decode to an
enormous picture is refused without decoding it. Checks decode what a render will read and are
remembered per version (size and modification time) of the file.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import av
import numpy as np
from PIL import Image

MAX_SIDE = 8192
MAX_PIXELS = MAX_SIDE * MAX_SIDE
"""The largest picture read: far more than any model uses (profiles' sides end at 4096)."""


def _too_large(name: str, width: int, height: int) -> str | None:
    if width * height > MAX_PIXELS:
        return (
            f"{name} is {width}x{height} pixels, more than any model can use (at most {MAX_PIXELS:,} pixels, "
            f"e.g. {MAX_SIDE}x{MAX_SIDE})"
        )
    return None


def _open_image(path: Path) -> Image.Image:
    """The image at `path` with only its header read; ValueError when unreadable or too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise ValueError(
            f"{path.name} declares a size of more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels, "
            f"more than any model can use (at most {MAX_PIXELS:,})"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path.name} is not a readable image ({exc.__class__.__name__})") from None
    problem = _too_large(path.name, *image.size)
    if problem:
        image.close()
        raise ValueError(problem)
    return image


def read_image(path: Path) -> np.ndarray:
    """The image at `path` as (h, w, 3) uint8 RGB; ValueError when unreadable, corrupt or too large."""
    with _open_image(path) as image:
        try:
            return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"{path.name} is a corrupt image ({exc})") from None


def check_image(path: Path) -> None:
    """Raise ValueError unless `path` is an image that decodes fully within the size bound."""
    stat = path.stat()
    _checked_image(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _checked_image(path: Path, size: int, mtime_ns: int) -> None:
    read_image(path)


def check_video(path: Path, frames: int | None = None) -> int:
    """The frame count of the video at `path`, after decoding its first `frames` frames (all when None);
    ValueError when it is unreadable, has no video stream, is too large or those frames do not decode."""
    stat = path.stat()
    return _checked_video(path, stat.st_size, stat.st_mtime_ns, frames)


@functools.lru_cache(maxsize=256)
def _checked_video(path: Path, size: int, mtime_ns: int, frames: int | None) -> int:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            problem = _too_large(path.name, stream.codec_context.width, stream.codec_context.height)
            if problem:
                raise ValueError(problem)
            known = stream.frames  # 0 when the container does not say: then every frame is decoded to count them
            needed = (min(frames, known) if frames is not None else known) if known > 0 else None
            decoded = 0
            for _ in container.decode(stream):
                decoded += 1
                if decoded == needed:
                    break
    except av.FFmpegError as exc:
        raise ValueError(f"{path.name} is not a readable video ({exc.__class__.__name__})") from None
    if decoded == 0 or (needed is not None and decoded < needed):
        raise ValueError(f"{path.name} is a corrupt video: {decoded} of {needed or 'its'} frames decode")
    return known if known > 0 else decoded
