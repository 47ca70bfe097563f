"""Transitions on the stitched video: a crossfade mixes the two clips frame by frame, a cut does not."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import Project, read_video

SCENE = """
    scenekit: 1
    defaults: {model: preview, size: 128x96, fps: 12, seed: 3}
    clips:
      - {id: red, prompt: "red", frames: 24, conditioning: [{image: red.png, frame: 0}]}
      - {id: blue, prompt: "blue", frames: 24, conditioning: [{image: blue.png, frame: 0}], transition: TRANSITION}
    output: {file: out.mp4, crf: 10, preset: ultrafast}
"""
T = 8  # transition frames: the blue clip enters over the red clip's last 8 frames


def colours(project: Project, transition: str) -> np.ndarray:
    """Median red and blue of every output frame (the median ignores the drawn captions and labels)."""
    project.image("red.png", (220, 30, 30))
    project.image("blue.png", (30, 30, 220))
    project.write(SCENE.replace("TRANSITION", transition))
    frames, _, _ = read_video(project.render().output)
    return np.median(frames.reshape(len(frames), -1, 3), axis=1)[:, [0, 2]]


def test_crossfade_mixes_the_clips_in_even_steps(project: Project):
    mixed = colours(project, f"{{type: crossfade, duration: {T}f}}")
    assert len(mixed) == 24 + 24 - T
    start = 24 - T  # the first frame of the crossfade
    red, blue = mixed[start - 1], mixed[start + T]  # the last frame of only red, the first of only blue
    assert red[0] - red[1] > 100 and blue[1] - blue[0] > 100
    for j in range(T):  # within 15 levels: the clips' own gentle motion moves them by up to ~12; a frame off is ~20
        alpha = (j + 1) / (T + 1)
        assert np.abs(mixed[start + j] - (red * (1 - alpha) + blue * alpha)).max() < 15, (
            f"crossfade frame {j}: {mixed[start + j]}"
        )


@pytest.mark.parametrize("transition", ["cut", f"{{type: fade, duration: {T}f}}"])
def test_other_transitions_do_not_mix_the_clips(project: Project, transition: str):
    """Controls: the measure above tells a crossfade from a cut and from a fade through black."""
    frames = colours(project, transition)
    red, blue = frames[0], frames[-1]
    halfway = [np.abs(frame - (red + blue) / 2).max() < 20 for frame in frames]
    assert not any(halfway)
