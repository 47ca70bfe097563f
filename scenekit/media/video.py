"""Frame files: lossless FFV1 for intermediates, H.264 mp4 for the final output."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

FRAMES_FILE = "frames.mkv"


class VideoWriter:
    """Writes RGB frames one at a time to a video file.

    `lossless=True` writes FFV1 (bit-exact RGB, for cache entries); otherwise H.264 yuv420p mp4
    with the given CRF and preset and the index at the front (faststart).
    """

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, *, lossless: bool, crf: int = 18, preset: str = "medium"):
        options = {} if lossless else {"movflags": "+faststart"}
        self._container = av.open(str(path), mode="w", options=options)
        if lossless:
            self._stream = self._container.add_stream("ffv1", rate=fps)
            self._stream.pix_fmt = "bgr0"
        else:
            self._stream = self._container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
            self._stream.pix_fmt = "yuv420p"
        self._stream.width, self._stream.height = width, height
        self._stream.codec_context.time_base = Fraction(1) / fps
        self._count = 0

    def write(self, frame: np.ndarray) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self._count
        self._count += 1
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._container.close()


def iter_frames(path: Path, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames [start, stop) of a video file, decoded in order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if stop is not None and index >= stop:
                break
            if index >= start:
                yield frame.to_ndarray(format="rgb24")


def read_frames(path: Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    """RGB frames [start, stop) of a video file as one (N, H, W, 3) uint8 array."""
    frames = list(iter_frames(path, start, stop))
    if not frames:
        raise ValueError(f"{path} has no frames in [{start}, {stop})")
    return np.stack(frames)


def write_frames(path: Path, frames: np.ndarray, fps: Fraction) -> None:
    """Write an (N, H, W, 3) uint8 array losslessly."""
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps, lossless=True) as writer:
        for frame in frames:
            writer.write(frame)
