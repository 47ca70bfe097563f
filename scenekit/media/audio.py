"""Clip audio: float32 WAV files, frame-exact slicing, resampling and transition gains.

A clip's audio covers exactly its generated frames: sample `i` is the instant `i / sample_rate`
after generated frame 0 starts. Samples are float32 arrays shaped (channels, n), nominally in [-1, 1].

Frame `f` of a `fps` video starts at sample `frame_to_sample(f) = round(f * sample_rate / fps)`
(exact rational arithmetic, ties to even), so the slices of consecutive frame ranges tile a track
with no gap or overlap, whatever the rates.

Transitions follow the video's curve: over a `T`-frame transition the video's frame `j` mixes with
`alpha = (j + 1) / (T + 1)`; the audio uses the same alpha, interpolated linearly in time so it equals
the video's value at every frame's centre. A crossfade is equal-power (outgoing gain cos(alpha*pi/2),
incoming sin(alpha*pi/2): constant loudness for unrelated sounds, as editors' default crossfades).
A fade through black is linear like the video's: the outgoing clip falls from 1 to 0 while alpha
goes to 1/2 and the incoming clip rises from 0 to 1 after that, so the middle of the fade is silent.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.audio.resampler import AudioResampler

# Sampling rates AAC (MPEG-4 audio) can signal directly.
AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350})

_INTEGER_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0}


def channel_layout(channels: int) -> str:
    """FFmpeg's name for a layout of `channels` channels."""
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")


def write_audio(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write (channels, n) float32 samples as a float32 PCM WAV file; `read_audio` gives them back bit-exact."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 2 or samples.shape[0] < 1:
        raise ValueError(f"audio samples must be shaped (channels, n); got {samples.shape}")
    channels, count = samples.shape
    layout = channel_layout(channels)
    with av.open(str(path), mode="w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=sample_rate, layout=layout)
        if count:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples.T).reshape(1, -1), format="flt", layout=layout
            )
            frame.sample_rate = sample_rate
            frame.pts = 0
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(samples, sample_rate) of an audio file: float32 (channels, n); integer PCM is scaled to [-1, 1)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        parts = []
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            if not frame.format.is_planar:
                data = data.reshape(-1, channels).T
            name = frame.format.name.rstrip("p")
            if name in _INTEGER_SCALE:
                offset = 128.0 if name == "u8" else 0.0
                data = (data.astype(np.float64) - offset) / _INTEGER_SCALE[name]
            parts.append(data.astype(np.float32, copy=False))
    if not parts:
        return np.zeros((channels, 0), np.float32), rate
    return np.ascontiguousarray(np.concatenate(parts, axis=1)), rate


def frame_to_sample(frame: int, sample_rate: int, fps: Fraction) -> int:
    """Index of the first audio sample of video frame `frame` (the frame's start, rounded to a sample)."""
    return round(Fraction(frame) * sample_rate / Fraction(fps))


def slice_frames(samples: np.ndarray, sample_rate: int, fps: Fraction, start: int, stop: int) -> np.ndarray:
    """The samples of video frames [start, stop); short audio is padded with silence."""
    first, last = frame_to_sample(start, sample_rate, fps), frame_to_sample(stop, sample_rate, fps)
    return fit_length(samples[:, first:last], last - first)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """`samples` cut or padded with silence at the end to exactly `length` samples."""
    if samples.shape[1] >= length:
        return samples[:, :length]
    return np.pad(samples, ((0, 0), (0, length - samples.shape[1])))


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """`samples` with `channels` channels: mono is copied to every channel, otherwise channels are averaged down or zero-filled."""
    have = samples.shape[0]
    if have == channels:
        return samples
    if have == 1:
        return np.repeat(samples, channels, axis=0)
    if channels == 1:
        return samples.mean(axis=0, keepdims=True)
    if have > channels:
        return samples[:channels]
    return np.concatenate([samples, np.zeros((channels - have, samples.shape[1]), samples.dtype)])


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """`samples` at `target_rate` (libswresample through PyAV, aligned: sample 0 stays at time 0).

    The result has exactly round(n * target_rate / rate) samples.
    """
    if rate == target_rate:
        return samples
    channels, count = samples.shape
    length = round(Fraction(count * target_rate, rate))
    if count == 0:
        return np.zeros((channels, 0), np.float32)
    layout = channel_layout(channels)
    resampler = AudioResampler(format="fltp", layout=layout, rate=target_rate)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=layout)
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    out = resampler.resample(frame) + resampler.resample(None)
    data = np.concatenate([f.to_ndarray() for f in out], axis=1) if out else np.zeros((channels, 0), np.float32)
    return fit_length(data.astype(np.float32, copy=False), length)


def transition_alpha(
    first_sample: int, count: int, sample_rate: int, fps: Fraction, start_frame: int, frames: int
) -> np.ndarray:
    """The transition's alpha at samples [first_sample, first_sample + count) of the track.

    The transition spans video frames [start_frame, start_frame + frames); at the centre of its
    frame `j` alpha is (j + 1) / (frames + 1), as `scenekit.stitch.blend` uses for the pictures.
    """
    position = (
        np.arange(first_sample, first_sample + count, dtype=np.float64) * float(fps) / sample_rate
    ) - start_frame
    return np.clip((position + 0.5) / (frames + 1), 0.0, 1.0)


def transition_gains(kind: str, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(outgoing, incoming) gains at `alpha` for a `crossfade` (equal-power) or a `fade` (through silence, linear)."""
    if kind == "fade":
        return np.maximum(0.0, 1.0 - 2.0 * alpha), np.maximum(0.0, 2.0 * alpha - 1.0)
    if kind == "crossfade":
        return np.cos(alpha * (np.pi / 2)), np.sin(alpha * (np.pi / 2))
    raise ValueError(f"no audio gains for a `{kind}` transition")
