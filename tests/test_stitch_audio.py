"""Audio through the stitch: clip audio.wav files are trimmed, mixed and muxed as AAC, aligned to the frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest

from scenekit.graph.nodes import Node
from scenekit.media.audio import (
    frame_to_sample,
    read_audio,
    resample,
    slice_frames,
    transition_alpha,
    transition_gains,
    write_audio,
)
from scenekit.media.video import write_frames
from scenekit.node_media import AUDIO_FILE, FRAMES_FILE
from scenekit.ops import NodeOutput
from scenekit.stitch import SEGMENT, STITCH, VIDEO_FILE, segment, segment_params, stitch

FPS = Fraction(24)
WIDTH, HEIGHT = 64, 48
AAC_FRAME = 1024
AMPLITUDE = 0.5


def tone(frequency: float, rate: int, count: int) -> np.ndarray:
    """A stereo sine starting at phase 0 on sample 0."""
    wave = AMPLITUDE * np.sin(2 * np.pi * frequency * np.arange(count) / rate)
    return np.stack([wave, wave]).astype(np.float32)


def make_entry(
    root: Path, name: str, colour: tuple[int, int, int], generated: int, frequency: float | None, rate: int = 24000
) -> Path:
    """A fake clip cache entry: `generated` flat frames, and a tone covering them exactly when `frequency` is set."""
    folder = root / name
    folder.mkdir()
    frames = np.broadcast_to(np.array(colour, np.uint8), (generated, HEIGHT, WIDTH, 3)).copy()
    write_frames(folder / FRAMES_FILE, frames, FPS)
    if frequency is not None:
        write_audio(folder / AUDIO_FILE, tone(frequency, rate, frame_to_sample(generated, rate, FPS)), rate)
    return folder


def run_stitch(
    tmp_path: Path, clips: list[dict[str, Any]], folders: list[Path], fade_in: int = 0, fade_out: int = 0
) -> Path:
    """Run the segment and stitch ops directly on hand-made clip entries, with params laid out as
    `stitch_nodes` lays them out."""
    entries, position = [], 0
    for clip in clips:
        position -= clip["t"]
        entries.append(
            {"range": clip["range"], "transition": {"type": clip["type"], "frames": clip["t"]}, "start": position}
        )
        position += clip["range"][1] - clip["range"][0]
    video = {"width": WIDTH, "height": HEIGHT, "fps": "24", "crf": 18, "preset": "ultrafast"}
    outputs = {f"clip{i}": NodeOutput(lambda folder=folder: folder) for i, folder in enumerate(folders)}
    fades = {"in": fade_in, "out": fade_out, "total": position}
    for index in range(len(clips)):
        params = segment_params(video, entries, index, fades)
        if params is None:
            continue
        workdir = tmp_path / f"segment{index}"
        workdir.mkdir()
        inputs = {"clip": outputs[f"clip{index}"]}
        if params["previous"] is not None:
            inputs["previous"] = outputs[f"clip{index - 1}"]
        segment(
            Node(f"segment{index}", SEGMENT, params, {}),
            inputs,
            SimpleNamespace(workdir=workdir, step=lambda done, total: None),
        )
        outputs[f"segment{index}"] = NodeOutput(lambda folder=workdir: folder)
    workdir = tmp_path / "stitch"
    workdir.mkdir()
    node = Node(
        STITCH, STITCH, {**video, "frames": position, "clips": entries, "fade": {"in": fade_in, "out": fade_out}}, {}
    )
    stitch(node, outputs, SimpleNamespace(workdir=workdir, step=lambda done, total: None))
    return workdir / VIDEO_FILE


def read_back(path: Path) -> tuple[int, np.ndarray | None, int | None]:
    """(video frame count, decoded audio (channels, n) or None, audio rate or None)."""
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return frames, None, None
        rate = container.streams.audio[0].codec_context.sample_rate
        audio = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
    return frames, audio, rate


def window(audio: np.ndarray, rate: int, frame: float, half_seconds: float) -> np.ndarray:
    centre = round(frame / float(FPS) * rate)
    half = round(half_seconds * rate)
    return audio[0, centre - half : centre + half]


def spectrum(signal: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / rate), magnitude


def dominant(signal: np.ndarray, rate: int) -> float:
    freqs, magnitude = spectrum(signal, rate)
    return float(freqs[np.argmax(magnitude)])


def level(signal: np.ndarray, rate: int, frequency: float) -> float:
    freqs, magnitude = spectrum(signal, rate)
    return float(magnitude[np.abs(freqs - frequency) < 15].max())


def rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))


# Timeline: a (440 Hz) | crossfade 12 | b (1010 Hz, trimmed from generated frame 6) | fade 12 |
# c (2500 Hz, 48 kHz source) | cut | d (no audio) | cut | e (660 Hz).
# The tones are chosen so that a clip's audio shifted by a frame (or by b's 6 trimmed frames) is out of phase.
SCENE = [
    {
        "name": "a",
        "colour": (200, 40, 40),
        "generated": 40,
        "range": [0, 36],
        "type": "cut",
        "t": 0,
        "tone": 440.0,
        "rate": 24000,
    },
    {
        "name": "b",
        "colour": (40, 200, 40),
        "generated": 48,
        "range": [6, 42],
        "type": "crossfade",
        "t": 12,
        "tone": 1010.0,
        "rate": 24000,
    },
    {
        "name": "c",
        "colour": (40, 40, 200),
        "generated": 36,
        "range": [0, 36],
        "type": "fade",
        "t": 12,
        "tone": 2500.0,
        "rate": 48000,
    },
    {
        "name": "d",
        "colour": (120, 120, 120),
        "generated": 30,
        "range": [0, 30],
        "type": "cut",
        "t": 0,
        "tone": None,
        "rate": 24000,
    },
    {
        "name": "e",
        "colour": (200, 200, 40),
        "generated": 24,
        "range": [0, 24],
        "type": "cut",
        "t": 0,
        "tone": 660.0,
        "rate": 24000,
    },
]
STARTS = [0, 24, 48, 84, 114]
TOTAL = 138


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, np.ndarray, int, Path]:
    root = tmp_path_factory.mktemp("scene")
    folders = [make_entry(root, c["name"], c["colour"], c["generated"], c["tone"], c["rate"]) for c in SCENE]
    path = run_stitch(root, SCENE, folders)
    frames, audio, rate = read_back(path)
    assert audio is not None and rate is not None
    return frames, audio, rate, path


def test_audio_round_trips_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for channels, rate in ((2, 24000), (1, 44100)):
        samples = rng.uniform(-1.5, 1.5, (channels, 12345)).astype(np.float32)
        samples[0, :3] = [0.0, -0.0, 1e-30]
        write_audio(tmp_path / AUDIO_FILE, samples, rate)
        back, back_rate = read_audio(tmp_path / AUDIO_FILE)
        assert back_rate == rate
        assert back.dtype == np.float32 and back.shape == samples.shape
        assert np.array_equal(back.view(np.uint32), samples.view(np.uint32))


def test_frame_slices_tile_the_track() -> None:
    fps, rate = Fraction(30000, 1001), 44100
    samples = np.arange(frame_to_sample(100, rate, fps), dtype=np.float32)[None]
    pieces = [slice_frames(samples, rate, fps, start, start + 7) for start in range(0, 98, 7)]
    joined = np.concatenate(pieces + [slice_frames(samples, rate, fps, 98, 100)], axis=1)
    assert np.array_equal(joined, samples)
    assert slice_frames(samples, rate, fps, 10, 11).shape[1] in (1471, 1472)  # 1471.47 samples a frame
    assert frame_to_sample(48, 24000, Fraction(24)) == 48000


def test_transition_curves_follow_the_video() -> None:
    rate, frames = 24000, 12
    alpha = transition_alpha(0, frame_to_sample(frames, rate, FPS), rate, FPS, 0, frames)
    centres = [round((j + 0.5) * rate / 24) for j in range(frames)]
    assert np.allclose(alpha[centres], [(j + 1) / (frames + 1) for j in range(frames)])
    out, into = transition_gains("crossfade", alpha)
    assert np.allclose(out**2 + into**2, 1.0)
    out, into = transition_gains("fade", alpha)
    assert out[0] > 0.9 and into[-1] > 0.9
    assert np.all((out == 0) | (into == 0))
    assert out[len(alpha) // 2] < 0.01 and into[len(alpha) // 2] < 0.01


def test_resample_keeps_time_zero() -> None:
    source = tone(440.0, 24000, 24000)
    up = resample(source, 24000, 48000)
    assert up.shape == (2, 48000)
    expected = tone(440.0, 48000, 48000)
    assert np.abs(up[:, 1000:47000] - expected[:, 1000:47000]).max() < 1e-3


def test_stitched_video_has_aligned_audio(scene: tuple[int, np.ndarray, int, Path]) -> None:
    frames, audio, rate, path = scene
    assert frames == TOTAL
    assert rate == 48000  # the clips' rates differ, so everything is resampled to 48 kHz
    expected = frame_to_sample(TOTAL, rate, FPS)
    assert abs(audio.shape[1] - expected) <= AAC_FRAME
    with av.open(str(path)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert sound.codec_context.name == "aac"
        assert abs(float(sound.duration * sound.time_base) - TOTAL / 24) <= AAC_FRAME / rate
        assert abs(float(video.duration * video.time_base) - TOTAL / 24) < 1e-6


def test_each_clip_plays_its_own_tone_in_place(scene: tuple[int, np.ndarray, int, Path]) -> None:
    _, audio, rate, _ = scene
    for clip, start in zip(SCENE, STARTS, strict=True):
        if clip["tone"] is None:
            continue
        length = clip["range"][1] - clip["range"][0]
        middle = start + length / 2
        assert abs(dominant(window(audio, rate, middle, 0.15), rate) - clip["tone"]) < 10, clip["name"]
        # Phase check: the output sample of timeline frame `start` is the clip's sample of generated frame range[0].
        first = frame_to_sample(round(middle) - 3, rate, FPS)
        count = frame_to_sample(6, rate, FPS)
        offset = frame_to_sample(clip["range"][0], rate, FPS) - frame_to_sample(start, rate, FPS)
        reference = tone(clip["tone"], rate, first + offset + count)[0, first + offset :]
        got = audio[0, first : first + count]
        correlation = float(np.dot(got, reference) / np.sqrt(np.dot(got, got) * np.dot(reference, reference)))
        assert correlation > 0.99, (clip["name"], correlation)


def test_crossfade_mixes_both_tones(scene: tuple[int, np.ndarray, int, Path]) -> None:
    _, audio, rate, _ = scene
    middle = window(audio, rate, 30, 0.1)  # crossfade a -> b spans timeline frames 24..35
    a, b = level(middle, rate, 440.0), level(middle, rate, 1010.0)
    assert min(a, b) > 0.5 * max(a, b)
    body = rms(window(audio, rate, 12, 0.1))
    assert 0.8 * body < rms(middle) < 1.2 * body  # equal-power: unrelated tones keep their loudness


def test_fade_dips_to_silence(scene: tuple[int, np.ndarray, int, Path]) -> None:
    _, audio, rate, _ = scene
    body = rms(window(audio, rate, 42, 0.1))  # clip b, before the fade (timeline frames 48..59)
    assert rms(window(audio, rate, 54, 0.01)) < 0.05 * body
    early, late = window(audio, rate, 50, 0.04), window(audio, rate, 58, 0.04)
    assert dominant(early, rate) == pytest.approx(1010.0, abs=30) and dominant(late, rate) == pytest.approx(
        2500.0, abs=30
    )


def test_clip_without_audio_is_silent(scene: tuple[int, np.ndarray, int, Path]) -> None:
    _, audio, rate, _ = scene
    assert rms(window(audio, rate, 99, 0.5)) < 1e-3  # clip d: timeline frames 84..113
    cut = frame_to_sample(114, rate, FPS)  # clip e starts with a cut: the tone starts right there
    assert rms(audio[0, cut - round(0.03 * rate) : cut - round(0.005 * rate)]) < 0.05 * AMPLITUDE
    assert rms(audio[0, cut + round(0.005 * rate) : cut + round(0.03 * rate)]) > 0.5 * AMPLITUDE


def test_common_rate_is_kept(tmp_path: Path) -> None:
    clips = [
        {"name": "a", "colour": (200, 40, 40), "generated": 12, "range": [0, 12], "type": "cut", "t": 0, "tone": 440.0},
        {
            "name": "b",
            "colour": (40, 40, 200),
            "generated": 12,
            "range": [0, 12],
            "type": "crossfade",
            "t": 4,
            "tone": 1000.0,
        },
    ]
    folders = [make_entry(tmp_path, c["name"], c["colour"], c["generated"], c["tone"]) for c in clips]
    frames, audio, rate = read_back(run_stitch(tmp_path, clips, folders))
    assert frames == 20 and rate == 24000 and audio is not None
    assert abs(audio.shape[1] - frame_to_sample(20, 24000, FPS)) <= AAC_FRAME


def test_video_only_scene_has_no_audio_stream(tmp_path: Path) -> None:
    clips = [
        {"name": "a", "colour": (200, 40, 40), "generated": 12, "range": [0, 12], "type": "cut", "t": 0, "tone": None},
        {"name": "b", "colour": (40, 40, 200), "generated": 16, "range": [2, 14], "type": "fade", "t": 4, "tone": None},
    ]
    folders = [make_entry(tmp_path, c["name"], c["colour"], c["generated"], c["tone"]) for c in clips]
    path = run_stitch(tmp_path, clips, folders)
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 0 and len(container.streams.video) == 1
    assert read_back(path)[0] == 20


def test_mono_clip_audio_and_short_audio(tmp_path: Path) -> None:
    clips = [{"name": "a", "colour": (200, 40, 40), "generated": 12, "range": [0, 12], "type": "cut", "t": 0}]
    folder = make_entry(tmp_path, "a", (200, 40, 40), 12, None)
    write_audio(folder / AUDIO_FILE, tone(440.0, 16000, 8000)[:1], 16000)  # mono, exactly 12 frames at 24 fps
    (tmp_path / "mono").mkdir()
    frames, audio, rate = read_back(run_stitch(tmp_path / "mono", clips, [folder]))
    assert frames == 12 and rate == 16000 and audio is not None and audio.shape[0] == 2
    assert abs(dominant(audio[1, 2000:6000], rate) - 440.0) < 10
    write_audio(folder / AUDIO_FILE, tone(440.0, 16000, 8000 - 864), 16000)  # 54 ms short, as LTX-2's can be: padded
    (tmp_path / "ltx").mkdir()
    assert read_back(run_stitch(tmp_path / "ltx", clips, [folder]))[0] == 12
    write_audio(folder / AUDIO_FILE, tone(440.0, 16000, 6000), 16000)  # 9 frames of audio for 12 frames
    (tmp_path / "short").mkdir()
    with pytest.raises(ValueError, match="audio has 6000 samples"):
        run_stitch(tmp_path / "short", clips, [folder])


def test_scene_fades_in_and_out_pictures_and_sound_together(tmp_path: Path) -> None:
    """12 frames in from black and silence, 12 out, over one flat grey clip with a steady tone."""
    clip = [{"name": "a", "range": [0, 48], "type": "cut", "t": 0}]
    folder = make_entry(tmp_path, "a", (200, 200, 200), 48, 440.0)
    path = run_stitch(tmp_path, clip, [folder], fade_in=12, fade_out=12)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24").astype(np.float64).mean() for f in container.decode(video=0)]
    assert len(frames) == 48
    expected = [200 * min(1.0, (t + 1) / 13, (48 - t) / 13) for t in range(48)]
    assert max(abs(a - b) for a, b in zip(frames, expected, strict=True)) < 3  # H.264 on flat frames
    _, audio, rate = read_back(path)
    middle = rms(window(audio, rate, 24, 0.1))
    assert rms(window(audio, rate, 5.5, 0.02)) == pytest.approx(middle * 6.5 / 13, rel=0.08)  # half way in
    assert rms(window(audio, rate, 41.5, 0.02)) == pytest.approx(middle * 6.5 / 13, rel=0.08)  # half way out
    assert rms(audio[0, :50]) < 0.05 * middle and rms(audio[0, -200:]) < 0.1 * middle
