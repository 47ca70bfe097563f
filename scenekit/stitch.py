"""The stitch node: trims every clip to its timeline segment, applies transitions, encodes the mp4.

When any clip's entry folder holds `audio.wav`, the mp4 also gets an AAC track mixed the same way:
every clip's audio trimmed to its segment's time range, silence for clips without audio, and the
video's transitions applied over the same frames (see `scenekit.media.audio` for the curves).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from scenekit.graph.nodes import Node
from scenekit.media.audio import (
    AAC_RATES, fit_length, frame_to_sample, output_audio, resample, slice_frames, to_channels, transition_alpha,
    transition_gains,
)
from scenekit.media.video import VideoWriter, iter_output_frames
from scenekit.ops import NodeOutput, RunContext, register
from scenekit.preview.draw import annotate
from scenekit.timeline import Timeline
from scenekit.units import format_rate

STITCH = "stitch"
VIDEO_FILE = "video.mp4"
AUDIO_RATE = 48000
AUDIO_CHANNELS = 2


def stitch_node(timeline: Timeline, frames_nodes: list[str]) -> Node:
    """The node that joins every clip's frames into the output video."""
    clips = []
    for clip, start in zip(timeline.clips, timeline.starts(), strict=True):
        clips.append({
            "range": [clip.segment_start, clip.segment_start + clip.frames],
            "transition": {"type": clip.transition, "frames": clip.transition_frames},
            "label": clip.id if clip.profile.annotate else None,
            "start": start,
        })
    width, height = timeline.size
    params: dict[str, Any] = {
        "width": width, "height": height, "fps": format_rate(timeline.fps), "frames": timeline.total_frames,
        "crf": timeline.crf, "preset": timeline.preset, "clips": clips,
    }
    inputs = {f"clip{index}": node for index, node in enumerate(frames_nodes)}
    sources = {"clips": "clips (ids, lengths, transitions)", "crf": timeline.sources["output.crf"], "preset": timeline.sources["output.preset"]}
    return Node(STITCH, STITCH, params, inputs, sources=sources)


def blend(outgoing: np.ndarray, incoming: np.ndarray, index: int, length: int, kind: str) -> np.ndarray:
    """Frame `index` of a `length`-frame transition from `outgoing` to `incoming`."""
    alpha = (index + 1) / (length + 1)
    a, b = outgoing.astype(np.float32), incoming.astype(np.float32)
    if kind == "fade":
        mixed = a * (1 - 2 * alpha) if alpha < 0.5 else b * (2 * alpha - 1)
    else:
        mixed = a * (1 - alpha) + b * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def timeline_frames(params: dict[str, Any], inputs: dict[str, NodeOutput]) -> Iterator[np.ndarray]:
    """The output frames in order: segments trimmed, labelled, and blended where clips overlap."""
    fps = float(Fraction(params["fps"]))
    clips = params["clips"]
    tail: list[np.ndarray] = []
    for index, clip in enumerate(clips):
        start, stop = clip["range"]
        t_in = clip["transition"]["frames"]
        t_out = clips[index + 1]["transition"]["frames"] if index + 1 < len(clips) else 0
        length = stop - start
        next_tail = []
        for j, frame in enumerate(iter_output_frames(inputs[f"clip{index}"], start, stop)):
            if clip["label"] is not None:
                frame = frame.copy()
                annotate(frame[None], first_timeline_frame=clip["start"] + j, fps=fps, label=clip["label"])
            if j < t_in:
                yield blend(tail[j], frame, j, t_in, clip["transition"]["type"])
            elif j >= length - t_out:
                next_tail.append(frame)
            else:
                yield frame
        tail = next_tail


def timeline_audio(params: dict[str, Any], inputs: dict[str, NodeOutput]) -> tuple[np.ndarray, int] | None:
    """The output's audio track, float32 (2, n) covering exactly the output's frames, and its rate;
    None when no clip has audio.

    The rate is the clips' common rate when AAC can carry it, else 48 kHz (clips are resampled).
    """
    found = {index: output_audio(inputs[f"clip{index}"]) for index in range(len(params["clips"]))}
    sources = {index: audio for index, audio in found.items() if audio is not None}
    if not sources:
        return None
    rates = {rate for _, rate in sources.values()}
    rate = rates.pop() if len(rates) == 1 and next(iter(rates)) in AAC_RATES else AUDIO_RATE
    fps = Fraction(params["fps"])
    clips = params["clips"]
    track = np.zeros((AUDIO_CHANNELS, frame_to_sample(params["frames"], rate, fps)), np.float32)
    for index, (samples, source_rate) in sources.items():
        clip = clips[index]
        start, stop = clip["range"]
        needed = frame_to_sample(stop, source_rate, fps)
        if samples.shape[1] < needed - frame_to_sample(1, source_rate, fps):
            raise ValueError(f"clip{index} audio has {samples.shape[1]} samples at {source_rate} Hz; frames up to {stop} need {needed}")
        samples = resample(to_channels(samples, AUDIO_CHANNELS), source_rate, rate)
        piece = slice_frames(samples, rate, fps, start, stop)
        first, last = clip["start"], clip["start"] + stop - start
        a, b = frame_to_sample(first, rate, fps), frame_to_sample(last, rate, fps)
        piece = fit_length(piece, b - a).copy()
        t_in = clip["transition"]["frames"]
        if t_in:
            end = frame_to_sample(first + t_in, rate, fps)
            alpha = transition_alpha(a, end - a, rate, fps, first, t_in)
            piece[:, :end - a] *= transition_gains(clip["transition"]["type"], alpha)[1]
        following = clips[index + 1]["transition"] if index + 1 < len(clips) else None
        if following and following["frames"]:
            t_out = following["frames"]
            begin = frame_to_sample(last - t_out, rate, fps)
            alpha = transition_alpha(begin, b - begin, rate, fps, last - t_out, t_out)
            piece[:, begin - a:] *= transition_gains(following["type"], alpha)[0]
        track[:, a:b] += piece
    return track, rate


@register(STITCH, version=1)
def stitch(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Write the final H.264 mp4 of the whole timeline, with an AAC track when any clip has audio."""
    params = node.params
    total = params["frames"]
    fps = Fraction(params["fps"])
    audio = timeline_audio(params, inputs)
    audio_rate = audio[1] if audio is not None else None
    written = 0
    with VideoWriter(ctx.workdir / VIDEO_FILE, params["width"], params["height"], fps,
                     lossless=False, crf=params["crf"], preset=params["preset"], audio_rate=audio_rate) as writer:
        for frame in timeline_frames(params, inputs):
            writer.write(frame)
            written += 1
            if audio is not None:  # the audio of every frame goes in with it, so the muxer can interleave
                writer.write_audio(audio[0][:, writer.audio_samples:frame_to_sample(written, audio[1], fps)])
            ctx.step(written, total)
        if audio is not None:
            writer.write_audio(audio[0][:, writer.audio_samples:])
    if written != total:
        raise RuntimeError(f"stitch wrote {written} frames, expected {total}")
