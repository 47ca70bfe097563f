"""Joining the clips into the output video, one H.264 segment per clip, so an edit re-encodes only the
segments it touches.

A clip's **segment** (`CLIP/segment`) holds the timeline frames from the clip's start up to where the
next clip's transition begins: its first frames blended with the previous clip's tail when a transition
comes in, its last frames left to the next segment when one goes out. Profiles that annotate (the
`preview` animatic) get their clip's burn-in drawn over the blended frames: the prompt as a caption,
the clip id and the timecode (`scenekit.media.overlay`), so pictures dissolve, text does not. Every
segment starts on a key frame and is encoded with the same settings, so the **stitch** node joins them
without decoding (stream copy) and adds the audio track: every clip's audio trimmed to its segment's
time range, silence for clips without audio, and the video's transitions applied over the same frames
(see `scenekit.media.audio`). The scene's fade in and out (`output.fade_in`, `fade_out`) dim the
pictures, their burn-in and the sound together.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np
from PIL import Image

from scenekit.graph.nodes import Node
from scenekit.media.audio import (
    AAC_RATES,
    fit_length,
    frame_to_sample,
    resample,
    slice_frames,
    to_channels,
    transition_alpha,
    transition_gains,
)
from scenekit.media.overlay import Burnin
from scenekit.media.video import concat_videos, encode_in_parts, part_count
from scenekit.node_media import iter_output_frames, output_audio, output_frames
from scenekit.ops import NodeOutput, RunContext, register
from scenekit.timeline import ResolvedClip, Timeline
from scenekit.units import format_rate

STITCH = "stitch"
SEGMENT = "stitch.segment"
VIDEO_FILE = "video.mp4"
SEGMENT_FILE = "segment.mp4"
AUDIO_RATE = 48000
AUDIO_CHANNELS = 2
#: Audio may end this much before its clip (padded with silence): LTX-2 decodes (4L - 3) hops of its
#: L latent steps (25 per second), up to 50 ms short of the frames. Anything shorter is an error.
SHORT_AUDIO_S = 0.06


def stitch_nodes(timeline: Timeline, frames_nodes: list[str]) -> list[Node]:
    """The segment nodes of the clips, then the stitch node that joins them into the output video."""
    clips = []
    for clip, start in zip(timeline.clips, timeline.starts(), strict=True):
        clips.append(
            {
                "range": [clip.segment_start, clip.segment_start + clip.frames],
                "transition": {"type": clip.transition, "frames": clip.transition_frames},
                "start": start,
            }
        )
    width, height = timeline.size
    # segments join only if one encoder build wrote them all: its version is part of their keys
    video = {
        "width": width,
        "height": height,
        "fps": format_rate(timeline.fps),
        "crf": timeline.crf,
        "preset": timeline.preset,
        "encoder": f"PyAV {av.__version__} libavcodec {av.library_versions['libavcodec']}",
    }
    encoding = {"crf": timeline.sources["output.crf"], "preset": timeline.sources["output.preset"]}
    fades = {"in": timeline.fade_in, "out": timeline.fade_out, "total": timeline.total_frames}
    nodes, inputs = [], {}
    for index, clip in enumerate(timeline.clips):
        params = segment_params(video, clips, index, fades, clip_burnin(clip))
        if params is None:
            continue
        segment_inputs = {"clip": frames_nodes[index]}
        if params["previous"] is not None:
            segment_inputs["previous"] = frames_nodes[index - 1]
        sources = {
            "range": f"clips[{clip.index}] length and transitions",
            "transition": clip.sources["transition"],
            "previous": f"clips[{clip.index}].transition",
            "burnin": f"clips[{clip.index}].id/prompt",
            "fade": "output.fade_in/fade_out",
            **encoding,
        }
        nodes.append(Node(f"{clip.id}/segment", SEGMENT, params, segment_inputs, {}, clip.id, sources=sources))
        inputs[f"segment{index}"] = nodes[-1].id
    inputs.update({f"clip{index}": node for index, node in enumerate(frames_nodes)})
    params = {
        **video,
        "frames": timeline.total_frames,
        "clips": clips,
        "fade": {"in": fades["in"], "out": fades["out"]},
    }
    sources = {"clips": "clips (lengths, transitions)", "fade": "output.fade_in/fade_out", **encoding}
    nodes.append(Node(STITCH, STITCH, params, inputs, sources=sources))
    return nodes


def clip_burnin(clip: ResolvedClip) -> dict[str, str] | None:
    """What is burnt into the clip's segment: its id and prompt when its profile annotates, else None."""
    return {"label": clip.id, "caption": clip.prompt} if clip.profile.annotate else None


def segment_params(
    video: dict[str, Any],
    clips: list[dict[str, Any]],
    index: int,
    fades: dict[str, int],
    burnin: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """Parameters of clip `index`'s segment (None when the next transition takes all its frames).

    `clips` are the stitch's: each clip's generated-frame `range`, incoming `transition` and timeline
    `start`; `fades` the scene's fade `in` and `out` frames and its `total` frames; `burnin` the
    `label` and `caption` drawn over the segment. Timeline positions are part of a segment only where a
    burn-in (its timecode) or a fade needs them.
    """
    clip = clips[index]
    t_in = clip["transition"]["frames"]
    t_out = clips[index + 1]["transition"]["frames"] if index + 1 < len(clips) else 0
    first, last = clip["range"]
    if last - t_out <= first:
        return None
    previous = None
    if t_in:
        before = clips[index - 1]
        previous = {"range": [before["range"][1] - t_in, before["range"][1]]}
    start, length = clip["start"], last - t_out - first
    fade = None
    if start < fades["in"] or start + length > fades["total"] - fades["out"]:
        fade = {**fades, "start": start}
    return {
        **video,
        "range": [first, last - t_out],
        "transition": clip["transition"],
        "previous": previous,
        "burnin": burnin,
        "start": start if burnin else None,
        "fade": fade,
    }


def fade_gain(frame: int, fade_in: int, fade_out: int, total: int) -> float:
    """Brightness (and loudness) of timeline frame `frame` under the scene's fades: frame `j` of a
    `T`-frame fade in is at (j + 1) / (T + 1), like a transition's frames; a fade out mirrors it."""
    gain = 1.0
    if frame < fade_in:
        gain = (frame + 1) / (fade_in + 1)
    if frame >= total - fade_out:
        gain = min(gain, (total - frame) / (fade_out + 1))
    return gain


def blend(outgoing: np.ndarray, incoming: np.ndarray, index: int, length: int, kind: str) -> np.ndarray:
    """Frame `index` of a `length`-frame transition from `outgoing` to `incoming`."""
    alpha = (index + 1) / (length + 1)
    a, b = outgoing.astype(np.float32), incoming.astype(np.float32)
    if kind == "fade":
        mixed = a * (1 - 2 * alpha) if alpha < 0.5 else b * (2 * alpha - 1)
    else:
        mixed = a * (1 - alpha) + b * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def fit_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame` scaled to fit inside width x height, centred on black (letterboxed); unchanged when it fits exactly."""
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    scale = min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    picture = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = picture
    return canvas


def segment_frames(params: dict[str, Any], inputs: dict[str, NodeOutput]) -> Iterator[np.ndarray]:
    """A segment's frames in order, at the output size: the first ones blended with the previous clip's
    tail when a transition comes in, then the burn-in drawn over them, then the scene's fades."""
    width, height = params["width"], params["height"]
    previous = params["previous"]
    tail: np.ndarray | None = None
    if previous is not None:
        tail = np.stack([fit_frame(f, width, height) for f in output_frames(inputs["previous"], *previous["range"])])
    first, last = params["range"]
    overlay = None
    if params["burnin"] is not None:
        frames = range(params["start"], params["start"] + last - first)
        overlay = Burnin(
            width,
            height,
            Fraction(params["fps"]),
            frames,
            label=params["burnin"]["label"],
            caption_text=params["burnin"]["caption"],
        )
    t_in, fade = params["transition"]["frames"], params["fade"]
    for j, frame in enumerate(iter_output_frames(inputs["clip"], first, last)):
        frame = fit_frame(frame, width, height)
        if tail is not None and j < t_in:
            frame = blend(tail[j], frame, j, t_in, params["transition"]["type"])
        if overlay is not None:
            frame = np.array(frame)  # the clip's frames may be shared and read-only
            overlay.apply(frame, params["start"] + j)
        if fade is not None:
            gain = fade_gain(fade["start"] + j, fade["in"], fade["out"], fade["total"])
            if gain < 1.0:
                frame = np.clip(frame.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
        yield frame


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
        allowed = max(frame_to_sample(1, source_rate, fps), round(SHORT_AUDIO_S * source_rate))
        if samples.shape[1] < needed - allowed:
            raise ValueError(
                f"clip{index} audio has {samples.shape[1]} samples at {source_rate} Hz; frames up to {stop} need {needed}"
            )
        samples = resample(to_channels(samples, AUDIO_CHANNELS), source_rate, rate)
        piece = slice_frames(samples, rate, fps, start, stop)
        first, last = clip["start"], clip["start"] + stop - start
        a, b = frame_to_sample(first, rate, fps), frame_to_sample(last, rate, fps)
        piece = fit_length(piece, b - a).copy()
        t_in = clip["transition"]["frames"]
        if t_in:
            end = frame_to_sample(first + t_in, rate, fps)
            alpha = transition_alpha(a, end - a, rate, fps, first, t_in)
            piece[:, : end - a] *= transition_gains(clip["transition"]["type"], alpha)[1]
        following = clips[index + 1]["transition"] if index + 1 < len(clips) else None
        if following and following["frames"]:
            t_out = following["frames"]
            begin = frame_to_sample(last - t_out, rate, fps)
            alpha = transition_alpha(begin, b - begin, rate, fps, last - t_out, t_out)
            piece[:, begin - a :] *= transition_gains(following["type"], alpha)[0]
        track[:, a:b] += piece
    fade, total = params["fade"], params["frames"]
    if fade["in"]:
        end = frame_to_sample(fade["in"], rate, fps)
        track[:, :end] *= transition_alpha(0, end, rate, fps, 0, fade["in"])
    if fade["out"]:
        begin = frame_to_sample(total - fade["out"], rate, fps)
        track[:, begin:] *= 1.0 - transition_alpha(
            begin, track.shape[1] - begin, rate, fps, total - fade["out"], fade["out"]
        )
    return track, rate


@register(SEGMENT, version=3, background=True)  # encodes while the GPU samples the next clip
def segment(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Encode one clip's segment of the timeline (H.264, starting on a key frame, parts encoded side by side)."""
    params = node.params
    total = params["range"][1] - params["range"][0]
    frames = list(segment_frames(params, inputs))
    if len(frames) != total:
        raise RuntimeError(f"segment has {len(frames)} frames, expected {total}")
    fps = Fraction(params["fps"])
    parts = part_count(total, fps)
    ctx.step(0, parts)
    encode_in_parts(
        frames,
        ctx.workdir / SEGMENT_FILE,
        fps,
        crf=params["crf"],
        preset=params["preset"],
        progress=lambda done: ctx.step(done, parts),
    )


@register(STITCH, version=2, holds_inputs=False)  # segment files and clip audio: the clips' frames can go
def stitch(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Join the segments into the final mp4 without re-encoding them, with an AAC track when any clip has audio."""
    params = node.params
    ctx.step(0, 1)
    segments = [
        inputs[name].path(SEGMENT_FILE)
        for name in sorted((n for n in inputs if n.startswith("segment")), key=lambda n: int(n.removeprefix("segment")))
    ]
    frames = concat_videos(segments, ctx.workdir / VIDEO_FILE, Fraction(params["fps"]), timeline_audio(params, inputs))
    if frames != params["frames"]:
        raise RuntimeError(f"stitch joined {frames} frames, expected {params['frames']}")
    ctx.step(1, 1)
