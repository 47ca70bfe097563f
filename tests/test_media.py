"""The media layer: H.264 output tagged BT.709 limited range, and no imports from above it."""

from __future__ import annotations

import ast
import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

import scenekit
from scenekit.media.video import VideoWriter, concat_videos, read_frames

PACKAGE = Path(scenekit.__file__).parent


def test_h264_is_converted_and_tagged_bt709_limited_range(tmp_path: Path):
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (235, 220, 30)]
    path = tmp_path / "tagged.mp4"
    with VideoWriter(path, 64, 48, Fraction(24), lossless=False, crf=0, preset="ultrafast") as writer:
        for colour in colours:
            writer.write(np.full((48, 64, 3), colour, np.uint8))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        assert (context.color_primaries, context.color_trc, context.colorspace) == (1, 1, 1)  # BT.709
        assert context.color_range == 1  # limited (tv, MPEG) range
        decoded = [frame.to_ndarray(format="rgb24")[24, 32] for frame in container.decode(stream)]
    np.testing.assert_allclose(decoded, colours, atol=3)  # a player reading the tags sees the colours written


def test_a_file_too_short_for_b_frames_joins_one_that_has_them(tmp_path: Path):
    """x264's `medium` preset delays decoding by two frames for B-frames, but a 2-frame file has none: joined
    first, its decode times overlapped the next file's and the muxer refused (a 4-frame scene with a crossfade)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 48, 64, 3), np.uint8)
    files = [tmp_path / "short.mp4", tmp_path / "long.mp4"]
    for path, part in zip(files, (frames[:2], frames[2:]), strict=True):
        with VideoWriter(path, 64, 48, Fraction(8), lossless=False, crf=18, preset="medium") as writer:
            for frame in part:
                writer.write(frame)
    joined = tmp_path / "joined.mp4"
    assert concat_videos(files, joined, Fraction(8)) == 6
    expected = np.concatenate([read_frames(path) for path in files])
    np.testing.assert_array_equal(read_frames(joined), expected)
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.dts is not None]
    assert sorted(p.pts for p in packets) == [round(i / 8 / stream.time_base) for i in range(6)]
    assert all(a.dts < b.dts for a, b in itertools.pairwise(packets)) and all(p.dts <= p.pts for p in packets)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name.startswith("scenekit")}


def test_media_imports_nothing_above_it_and_the_stitch_no_backend():
    for path in sorted((PACKAGE / "media").glob("*.py")):
        assert all(name.startswith("scenekit.media") for name in _imports(path)), f"{path.name}: {_imports(path)}"
    assert not {n for n in _imports(PACKAGE / "stitch.py") if n.startswith(("scenekit.preview", "scenekit.backends"))}
