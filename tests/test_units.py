from fractions import Fraction
from pathlib import Path

import pytest

from scenekit.engine.session import RenderOptions
from scenekit.units import format_rate, parse_duration, parse_fps, parse_size


@pytest.mark.parametrize(
    ("text", "fps", "frames"),
    [
        ("5s", 24, 120),
        ("500ms", 24, 12),
        (2.5, 24, 60),
        ("2.5", 24, 60),
        ("12f", 24, 12),
        ("1m", 24, 1440),
        ("0.5s", 25, 13),
        ("0.02s", 25, 1),
        (".5", 30, 15),
        ("4s", Fraction(30000, 1001), 120),
    ],
)
def test_durations_become_exact_frame_counts(text, fps, frames):
    assert parse_duration(text).to_frames(Fraction(fps)) == frames


@pytest.mark.parametrize("bad", ["5 sec", "-1s", "1.5f", "", True, "ten"])
def test_bad_durations_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_frame_rates_are_exact():
    assert parse_fps("30000/1001") == Fraction(30000, 1001)
    assert parse_fps(24) == 24
    assert parse_fps("23.976") == Fraction(23976, 1000)
    assert format_rate(Fraction(30000, 1001)) == "30000/1001"
    with pytest.raises(ValueError):
        parse_fps(0)


def test_sizes():
    assert parse_size("768x512") == (768, 512)
    with pytest.raises(ValueError):
        parse_size("768 by 512")


@pytest.mark.parametrize(
    ("options", "written"),
    [
        (RenderOptions(), "x.mp4"),
        (RenderOptions(model="preview"), "x.preview.mp4"),
        (RenderOptions(size=(384, 256)), "x.384x256.mp4"),
        (RenderOptions(model="ltx2-dev", size=(384, 256)), "x.ltx2-dev.384x256.mp4"),
        (RenderOptions(model="preview", size=(384, 256), output_variant="preview"), "x.preview.mp4"),
    ],
)
def test_overridden_renders_go_beside_the_output(options: RenderOptions, written: str):
    assert options.output_file(Path("/r/x.mp4")) == Path("/r") / written


def test_an_output_file_is_taken_as_given(tmp_path: Path):
    options = RenderOptions(model="preview", size=(384, 256), output=tmp_path / "look.mp4")
    assert options.output_file(Path("/r/x.mp4")) == tmp_path / "look.mp4"
