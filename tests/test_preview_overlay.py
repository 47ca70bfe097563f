"""The preview's burn-in (caption, clip id, timecode) is drawn over the blended timeline, not into the
clips' pictures: transitions dissolve pictures, never two captions into each other."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import ImageFont

from scenekit.media.overlay import ELLIPSIS, Burnin, wrap
from scenekit.node_media import FRAMES_FILE
from scenekit.ops import NodeOutput
from scenekit.stitch import blend, segment_frames, segment_params

from conftest import Project

WIDTH, HEIGHT = 128, 96
VIDEO = {"width": WIDTH, "height": HEIGHT, "fps": "12", "crf": 18, "preset": "ultrafast"}


def held(colour: tuple[int, int, int], count: int) -> NodeOutput:
    """A clip's output held in memory: `count` flat frames."""
    frames = np.broadcast_to(np.array(colour, np.uint8), (count, HEIGHT, WIDTH, 3))
    return NodeOutput(lambda: Path("/nowhere"), {FRAMES_FILE: frames})


def test_a_crossfade_blends_the_pictures_and_burns_in_only_the_incoming_clips_text():
    clips = [
        {"range": [0, 12], "transition": {"type": "cut", "frames": 0}, "start": 0},
        {"range": [0, 12], "transition": {"type": "crossfade", "frames": 4}, "start": 8},
    ]
    burnin = {"label": "beam", "caption": "The beam sweeps over a stormy sea"}
    params = segment_params(VIDEO, clips, 1, {"in": 0, "out": 0, "total": 20}, burnin)
    red, blue = (200, 30, 30), (30, 30, 200)
    frames = list(segment_frames(params, {"clip": held(blue, 12), "previous": held(red, 12)}))
    overlay = Burnin(WIDTH, HEIGHT, Fraction(12), range(8, 20), label="beam", caption_text=burnin["caption"])
    for j, frame in enumerate(frames):
        expected = np.full((HEIGHT, WIDTH, 3), blue, np.uint8)
        if j < 4:
            expected = blend(np.full_like(expected, red), expected, j, 4, "crossfade")
        overlay.apply(expected, 8 + j)
        np.testing.assert_array_equal(frame, expected, err_msg=f"frame {j} of the segment")


def test_the_burn_in_is_part_of_the_segments_key_and_not_of_the_pictures(project: Project):
    project.write("""
        scenekit: 1
        defaults: {size: 64x64, fps: 8}
        clips:
          - {id: one, prompt: first, frames: 9}
    """)
    graph = project.prepare().graph
    assert graph.node("one/segment").params["burnin"] == {"label": "one", "caption": "first"}
    assert "burnin" not in graph.node("one/generate").params and "burnin" not in graph.node("stitch").params


def test_a_caption_reads_only_what_fits_however_long_the_prompt():
    font = ImageFont.load_default(size=20)
    for text in ("a lighthouse " * 400_000, "x" * 5_000_000):  # 5 MB of words, one 5 MB word
        started = time.perf_counter()
        lines = wrap(text, font, 600, 4)
        assert time.perf_counter() - started < 0.5
        assert len(lines) == 4 and lines[-1].endswith(ELLIPSIS)
        assert all(font.getlength(line) <= 600 for line in lines)
    assert wrap("a short prompt", font, 600, 4) == ["a short prompt"]


def test_a_long_prompt_burns_in_quickly():
    started = time.perf_counter()
    overlay = Burnin(768, 512, Fraction(24), range(9), label="long", caption_text="word " * 1_000_000)
    frame = np.zeros((512, 768, 3), np.uint8)
    for n in range(9):
        overlay.apply(frame, n)
    assert time.perf_counter() - started < 1.0
