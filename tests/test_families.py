"""Model families plug in through one registry: a family defined here, in the test, renders through the
engine, the cache and the stitch without any change to scenekit."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from scenekit.backends import ClipNodes, Family, FramesOf, register_family
from scenekit.cli import app
from scenekit.graph.nodes import Node
from scenekit.node_media import keep_frames
from scenekit.ops import NodeOutput, RunContext, register
from scenekit.timeline import ResolvedClip, Timeline
from scenekit.units import format_rate

from conftest import Project, read_video

PAINT = "toy.paint"
PROFILE = """
name: toy
backend: toy
description: A test family that paints each clip one colour (its seed).
constraints: {size_multiple: 16, min_side: 32, max_side: 256}
defaults: {size: 64x48, fps: 24, overlap: 1}
"""


class ToyBackend:
    """One node per clip: frames of a single colour chosen by the clip's seed."""

    def expand(self, clip: ResolvedClip, timeline: Timeline, frames_of: FramesOf) -> ClipNodes:
        params: dict[str, Any] = {
            "width": clip.width,
            "height": clip.height,
            "frames": clip.generated_frames,
            "fps": format_rate(clip.fps),
            "seed": clip.seed,
        }
        node = Node(
            f"{clip.id}/paint", PAINT, params, {}, {}, clip.id, clip.profile.identity, {"seed": clip.sources["seed"]}
        )
        return ClipNodes([node], node.id)

    def machine_problem(self, clip: ResolvedClip, timeline: Timeline) -> str | None:
        return None


def colour(seed: int) -> tuple[int, int, int]:
    return (seed * 40 % 256, 200, 255 - seed * 40 % 256)


@register(PAINT, version=1)
def paint(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    p = node.params
    frames = np.empty((p["frames"], p["height"], p["width"], 3), np.uint8)
    frames[...] = colour(p["seed"])
    keep_frames(ctx, frames, Fraction(p["fps"]))


@pytest.fixture
def toy(project: Project, tmp_path_factory, monkeypatch) -> Project:
    profiles = tmp_path_factory.mktemp("profiles")
    (profiles / "toy.yaml").write_text(PROFILE)
    monkeypatch.setenv("SCENEKIT_PROFILE_PATH", str(profiles))
    register_family("toy", Family(f"{__name__}:ToyBackend", "toy.", __name__))
    return project


def test_a_family_defined_outside_scenekit_renders_through_the_engine(toy: Project):
    toy.write("""
        scenekit: 1
        defaults: {model: toy}
        clips:
          - {id: one, prompt: x, frames: 12, seed: 1}
          - {id: two, prompt: y, frames: 12, seed: 2}
        output: {file: out.mp4, preset: ultrafast, crf: 0}
    """)
    frames, _, _ = read_video(toy.render().output)
    assert frames.shape == (24, 48, 64, 3)
    for index, seed in ((0, 1), (23, 2)):
        assert np.abs(frames[index, 24, 32].astype(int) - colour(seed)).max() <= 3
    assert toy.planned_runs() == {}


def test_a_profile_naming_an_unregistered_backend_is_a_located_error(toy: Project, tmp_path_factory, monkeypatch):
    profiles = tmp_path_factory.mktemp("ghost-profiles")
    (profiles / "ghost.yaml").write_text(
        PROFILE.replace("name: toy", "name: ghost").replace("backend: toy", "backend: ghost")
    )
    monkeypatch.setenv("SCENEKIT_PROFILE_PATH", str(profiles))
    toy.write("""
        scenekit: 1
        clips: [{id: a, prompt: x, frames: 12, model: ghost}]
        output: {file: out.mp4}
    """)
    result = CliRunner().invoke(app, ["render", str(toy.spec), "--cache-dir", str(toy.cache)])
    assert result.exit_code == 2, result.output
    assert "scene.yaml:2:" in result.output and "backend `ghost`, which is not one of" in result.output


def test_an_unusable_profile_file_is_a_located_error(toy: Project, tmp_path_factory, monkeypatch):
    profiles = tmp_path_factory.mktemp("bad-profiles")
    (profiles / "bad.yaml").write_text("backend: toy\n")  # no name
    monkeypatch.setenv("SCENEKIT_PROFILE_PATH", str(profiles))
    toy.write("scenekit: 1\nclips: [{id: a, prompt: x, frames: 12}]\n")
    result = CliRunner().invoke(app, ["validate", str(toy.spec)])
    assert (
        result.exit_code == 2
        and "bad.yaml:1:1: error: not a usable model profile: name: Field required" in result.output
    )
