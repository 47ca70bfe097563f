"""Frame files: lossless FFV1 for intermediates, H.264 mp4 (optionally with AAC audio) for the final output."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from scenekit.ops import NodeOutput, RunContext

FRAMES_FILE = "frames.mkv"


class VideoWriter:
    """Writes RGB frames one at a time to a video file.

    `lossless=True` writes FFV1 (bit-exact RGB, for cache entries); otherwise H.264 yuv420p mp4
    with the given CRF and preset and the index at the front (faststart).

    With `audio_rate`, the file also gets an AAC audio track of `audio_channels` channels at that
    rate, starting at t=0 with the video; feed it with `write_audio` as the frames go (the muxer
    interleaves the two streams by time).
    """

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, *, lossless: bool, crf: int = 18, preset: str = "medium",
                 audio_rate: int | None = None, audio_channels: int = 2, audio_bitrate: int = 192_000):
        options = {} if lossless else {"movflags": "+faststart"}
        self._container = av.open(str(path), mode="w", options=options)
        if lossless:
            # FFV1 version 3 with slices encodes and decodes on all cores
            self._stream = self._container.add_stream("ffv1", rate=fps, options={"level": "3", "slices": "12"})
            self._stream.pix_fmt = "bgr0"
            self._stream.codec_context.thread_count = 0
        else:
            self._stream = self._container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.thread_type = "AUTO"  # x264's frame threads: they scale with cores, slices don't
        self._stream.width, self._stream.height = width, height
        self._stream.codec_context.time_base = Fraction(1) / fps
        self._count = 0
        self._audio = None
        self._audio_count = 0
        if audio_rate is not None:
            layout = {1: "mono", 2: "stereo"}.get(audio_channels, f"{audio_channels} channels")
            self._audio = self._container.add_stream("aac", rate=audio_rate, layout=layout)
            self._audio.bit_rate = audio_bitrate
            self._audio.codec_context.time_base = Fraction(1, audio_rate)

    def write(self, frame: np.ndarray) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self._count
        self._count += 1
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def write_audio(self, samples: np.ndarray) -> None:
        """Append float32 (channels, n) samples to the audio track (needs `audio_rate`)."""
        if self._audio is None:
            raise RuntimeError("this VideoWriter has no audio track")
        if samples.shape[1] == 0:
            return
        layout = self._audio.codec_context.layout.name
        audio_frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=layout)
        audio_frame.sample_rate = self._audio.codec_context.sample_rate
        audio_frame.time_base = self._audio.codec_context.time_base
        audio_frame.pts = self._audio_count
        self._audio_count += samples.shape[1]
        for packet in self._audio.encode(audio_frame):
            self._container.mux(packet)

    @property
    def audio_samples(self) -> int:
        """Audio samples written so far."""
        return self._audio_count

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        if self._audio is not None:
            for packet in self._audio.encode(None):
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


def keep_frames(ctx: RunContext, frames: np.ndarray, fps: Fraction) -> None:
    """A node's (N, H, W, 3) uint8 frames: handed to later nodes in memory, written losslessly in the background."""
    frames.flags.writeable = False
    ctx.keep(FRAMES_FILE, frames, lambda path: write_frames(path, frames, fps))


def output_frames(output: NodeOutput, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames [start, stop) of a node's output, as one (N, H, W, 3) uint8 array."""
    held = output.held(FRAMES_FILE)
    if held is None:
        return read_frames(output.path(FRAMES_FILE), start, stop)
    if not held[start:stop].shape[0]:
        raise ValueError(f"the frames held in memory have none in [{start}, {stop})")
    return held[start:stop]


def iter_output_frames(output: NodeOutput, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Frames [start, stop) of a node's output, one at a time."""
    held = output.held(FRAMES_FILE)
    return iter(held[start:stop]) if held is not None else iter_frames(output.path(FRAMES_FILE), start, stop)
