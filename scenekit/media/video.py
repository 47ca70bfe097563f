"""Frame files: lossless FFV1 for intermediates, H.264 mp4 (optionally with AAC audio) for the final output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from scenekit.media.audio import channel_layout

BT709 = 1  # the ITU-R BT.709 code of H.273 for colour primaries, transfer and matrix
MAX_OUTPUT_SIDE = 8192
"""The widest and tallest H.264 output: x264 takes up to 16384 a side and FFmpeg's frames fewer than
16384x16384 pixels, but such a frame is 800 MB; 8K is the sane limit."""


class VideoWriter:
    """Writes RGB frames one at a time to a video file.

    `lossless=True` writes FFV1 (bit-exact RGB, for cache entries); otherwise H.264 yuv420p mp4
    with the given CRF and preset and the index at the front (faststart), converted with the BT.709
    matrix to limited (tv) range and tagged so (primaries, transfer, matrix, range). H.264 files
    written with the same size, rate, CRF and preset can be joined without re-encoding (`concat_videos`).
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: Fraction,
        *,
        lossless: bool,
        crf: int = 18,
        preset: str = "medium",
    ):
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
            context = self._stream.codec_context
            context.color_primaries = context.color_trc = context.colorspace = BT709
            context.color_range = ColorRange.MPEG
        self._stream.width, self._stream.height = width, height
        self._stream.codec_context.time_base = Fraction(1) / fps
        self._lossless = lossless
        self._count = 0

    def write(self, frame: np.ndarray) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if not self._lossless:  # converted here: the encoder's own conversion would use the BT.601 matrix
            video_frame = video_frame.reformat(
                format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
            )
        video_frame.pts = self._count
        self._count += 1
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
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


def part_count(frames: int, fps: Fraction) -> int:
    """How many parts `encode_in_parts` splits `frames` frames into: one per started second."""
    return -(-frames // max(1, round(fps)))


def encode_in_parts(
    frames: list[np.ndarray],
    path: Path,
    fps: Fraction,
    *,
    crf: int,
    preset: str,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Encode `frames` to an H.264 mp4 as `VideoWriter` does, in parts of about a second that encode
    side by side (one x264 each) and join without re-encoding, so a clip's segment uses every core.

    The parts depend only on the frame count and rate (a key frame starts each), so the file is the same
    on every machine. `progress(parts_done)` is called as parts finish.
    """
    height, width = frames[0].shape[:2]
    size = -(-len(frames) // part_count(len(frames), fps))
    parts = [frames[start : start + size] for start in range(0, len(frames), size)]
    files = [path.with_name(f".{path.stem}.part{index}{path.suffix}") for index in range(len(parts))]

    def encode(index: int) -> None:
        with VideoWriter(files[index], width, height, fps, lossless=False, crf=crf, preset=preset) as writer:
            for frame in parts[index]:
                writer.write(frame)

    try:
        with ThreadPoolExecutor(len(parts)) as pool:  # x264 releases the GIL while it encodes
            for done, future in enumerate(as_completed([pool.submit(encode, i) for i in range(len(parts))]), start=1):
                future.result()
                if progress is not None:
                    progress(done)
        concat_videos(files, path, fps)
    finally:
        for file in files:
            file.unlink(missing_ok=True)


def concat_videos(paths: list[Path], path: Path, fps: Fraction, audio: tuple[np.ndarray, int] | None = None) -> int:
    """Join H.264 files written by `VideoWriter` with the same settings into one mp4, without re-encoding
    (each starts on a key frame), with the index at the front; adds an AAC track of `audio` ((channels, n)
    float32 samples and their rate, starting with the first frame) when given. Returns the frame count.

    Raises ValueError when the files were encoded with other settings than the first.
    """
    shifts = _decode_shifts(paths)
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as output:
        with av.open(str(paths[0])) as first:
            template = first.streams.video[0]
            video = output.add_stream_from_template(template)
            headers = bytes(template.codec_context.extradata or b"")
        track = _AudioTrack(output, *audio) if audio is not None else None
        frames = 0
        for part, early in zip(paths, shifts, strict=True):
            with av.open(str(part)) as source:
                stream = source.streams.video[0]
                if bytes(stream.codec_context.extradata or b"") != headers:
                    raise ValueError(f"{part.name} was encoded with other settings than {paths[0].name}")
                if stream.time_base is None:
                    raise ValueError(f"{part.name}: the video stream has no time base")
                offset = Fraction(frames) / fps / stream.time_base
                shift = early / stream.time_base
                if offset.denominator != 1 or shift.denominator != 1:
                    raise ValueError(
                        f"{part.name}: time base {stream.time_base} cannot place frame {frames} at {fps} fps"
                        f" (decoded {early}s early)"
                    )
                for packet in source.demux(stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    if packet.pts is None:
                        raise ValueError(f"{part.name}: a packet has no presentation time")
                    packet.pts += int(offset)
                    packet.dts += int(offset - shift)
                    packet.stream = video
                    output.mux(packet)
                    frames += 1
            if track is not None:  # the audio of the frames so far: the streams interleave segment by segment
                track.encode_until(Fraction(frames) / fps)
        if track is not None:
            track.finish()
    return frames


def _decode_shifts(paths: list[Path]) -> list[Fraction]:
    """How much earlier (in seconds) each file's decode times go in the joined stream, so they keep increasing.

    A file's decode times start its reorder delay (x264's B-frames: the first frame's pts minus its dts) before
    its first frame, and that delay depends on its frames: a file too short for B-frames has none. Where a
    later file has more delay than an earlier one, its first decode times would fall before the earlier
    file's last ones (the muxer refuses: "Invalid argument"). So every file decodes as early as the largest
    delay from it onwards: earlier decode times keep the order and stay before the presentation times, and
    files whose delay does not grow keep theirs.
    """
    delays = []
    for part in paths:
        delay = Fraction(0)
        with av.open(str(part)) as source:
            stream = source.streams.video[0]
            for packet in source.demux(stream):  # the first in decode order: the key frame, decoded earliest
                if packet.pts is not None and packet.dts is not None and stream.time_base is not None:
                    delay = (packet.pts - packet.dts) * stream.time_base
                break
        delays.append(delay)
    shifts = []
    later = Fraction(0)  # the largest delay of the files from this one on
    for delay in reversed(delays):
        later = max(later, delay)
        shifts.append(later - delay)
    return shifts[::-1]


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
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(self._samples[:, self._written : until], dtype=np.float32),
            format="fltp",
            layout=self._stream.codec_context.layout.name,
        )
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
