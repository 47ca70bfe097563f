"""Frame files: lossless FFV1 for intermediates, H.264 mp4 (optionally with AAC audio) for the final output."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from scenekit.media.audio import channel_layout
from scenekit.ops import NodeOutput, RunContext

FRAMES_FILE = "frames.mkv"


class VideoWriter:
    """Writes RGB frames one at a time to a video file.

    `lossless=True` writes FFV1 (bit-exact RGB, for cache entries); otherwise H.264 yuv420p mp4
    with the given CRF and preset and the index at the front (faststart). H.264 files written with
    the same size, rate, CRF and preset can be joined without re-encoding (`concat_videos`).

    """

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, *, lossless: bool, crf: int = 18, preset: str = "medium"):
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


def concat_videos(paths: list[Path], path: Path, fps: Fraction, audio: tuple[np.ndarray, int] | None = None) -> int:
    """Join H.264 files written by `VideoWriter` with the same settings into one mp4, without re-encoding
    (each starts on a key frame), with the index at the front; adds an AAC track of `audio` ((channels, n)
    float32 samples and their rate, starting with the first frame) when given. Returns the frame count.

    Raises ValueError when the files were encoded with other settings than the first.
    """
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as output:
        with av.open(str(paths[0])) as first:
            template = first.streams.video[0]
            video = output.add_stream_from_template(template)
            headers = bytes(template.codec_context.extradata or b"")
        track = _AudioTrack(output, *audio) if audio is not None else None
        frames = 0
        for part in paths:
            with av.open(str(part)) as source:
                stream = source.streams.video[0]
                if bytes(stream.codec_context.extradata or b"") != headers:
                    raise ValueError(f"{part.name} was encoded with other settings than {paths[0].name}")
                offset = Fraction(frames) / fps / stream.time_base
                if offset.denominator != 1:
                    raise ValueError(f"{part.name}: time base {stream.time_base} cannot place frame {frames} at {fps} fps")
                for packet in source.demux(stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.pts += int(offset)
                    packet.dts += int(offset)
                    packet.stream = video
                    output.mux(packet)
                    frames += 1
            if track is not None:  # the audio of the frames so far: the streams interleave segment by segment
                track.encode_until(Fraction(frames) / fps)
        if track is not None:
            track.finish()
    return frames


class _AudioTrack:
    """An AAC stream fed with consecutive pieces of one (channels, n) float32 track."""

    def __init__(self, output: Any, samples: np.ndarray, rate: int, bitrate: int = 192_000):
        self._output, self._samples, self._rate, self._written = output, samples, rate, 0
        self._stream = output.add_stream("aac", rate=rate, layout=channel_layout(samples.shape[0]))
        self._stream.bit_rate = bitrate
        self._stream.codec_context.time_base = Fraction(1, rate)

    def encode_until(self, seconds: Fraction) -> None:
        until = min(round(seconds * self._rate), self._samples.shape[1])
        if until <= self._written:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(self._samples[:, self._written:until], dtype=np.float32),
                                           format="fltp", layout=self._stream.codec_context.layout.name)
        frame.sample_rate = self._rate
        frame.time_base = self._stream.codec_context.time_base
        frame.pts = self._written
        self._written = until
        for packet in self._stream.encode(frame):
            self._output.mux(packet)

    def finish(self) -> None:
        """Encode what is left and flush the encoder."""
        self.encode_until(Fraction(self._samples.shape[1], self._rate))
        for packet in self._stream.encode(None):
            self._output.mux(packet)
