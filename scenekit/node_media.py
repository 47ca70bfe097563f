"""Frames and audio as node outputs: handed to later nodes in memory during a render and written to
the node's cache entry in the background (`frames.mkv`, lossless FFV1; `audio.wav`, float32 PCM)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from scenekit.media.audio import read_audio, write_audio
from scenekit.media.video import iter_frames, read_frames, write_frames
from scenekit.ops import NodeOutput, RunContext

FRAMES_FILE = "frames.mkv"
AUDIO_FILE = "audio.wav"


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


def keep_audio(ctx: RunContext, samples: np.ndarray, sample_rate: int) -> None:
    """A node's (channels, n) float32 audio: handed to later nodes in memory, written as WAV in the background."""
    samples = np.asarray(samples, dtype=np.float32)
    samples.flags.writeable = False
    ctx.keep(AUDIO_FILE, (samples, sample_rate), lambda path: write_audio(path, samples, sample_rate))


def output_audio(output: NodeOutput) -> tuple[np.ndarray, int] | None:
    """(samples, sample_rate) of a node's output, or None when it has no audio."""
    return output.read(AUDIO_FILE, read_audio) if output.has(AUDIO_FILE) else None
