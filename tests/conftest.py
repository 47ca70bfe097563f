"""Shared helpers: a scratch project folder, rendering in-process, reading videos back."""

from __future__ import annotations

import os
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from scenekit.engine.events import SilentEvents
from scenekit.engine.session import (
    Prepared,
    RenderOptions,
    RenderResult,
    prepare,
    render,
)


def pytest_configure() -> None:
    """One thread per pool, in this process and in the ones the tests start: on a small machine with other
    work beside it, torch's default pools (a thread per core, intra- and inter-op) oversubscribe the cores
    and the suite takes 3-5x longer; the tests' tensors are tiny, so more threads buy nothing."""
    os.environ.update(dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS"), "1"))
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


class Project:
    """A temporary project folder holding one spec, its assets and its cache."""

    def __init__(self, root: Path):
        self.root = root
        (root / "scenekit.toml").write_text("")
        self.spec = root / "scene.yaml"
        self.cache = root / "cache"

    def write(self, text: str, name: str = "scene.yaml") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def image(self, name: str, colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colour).save(path)
        return path

    def prepare(self, **options: object) -> Prepared:
        return prepare(self.spec, RenderOptions(cache_dir=self.cache, **options))

    def render(self, **options: object) -> RenderResult:
        return render(self.prepare(**options), SilentEvents())

    def planned_runs(self, **options: object) -> dict[str, str]:
        """Node id -> reason, for the nodes the next render would run."""
        return {p.node.id: p.reason for p in self.prepare(**options).plan() if p.status == "run"}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture(autouse=True)
def no_user_config(tmp_path_factory, monkeypatch) -> None:
    """Tests never read the config of the machine they run on."""
    monkeypatch.setenv("SCENEKIT_CONFIG", str(tmp_path_factory.getbasetemp() / "no-user-config.yaml"))


def read_video(path: Path) -> tuple[np.ndarray, Fraction, Fraction]:
    """Frames, frame rate and container duration (seconds) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        duration = Fraction(stream.duration) * stream.time_base
        return frames, Fraction(stream.average_rate), duration


class StartedNodes(SilentEvents):
    """Render events that keep the ids of the nodes in the order they started."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def node_started(self, node, position, total) -> None:
        self.started.append(node.id)


def count_transformer_loads(monkeypatch) -> list[str]:
    """The names of the LTX-2 transformer files loaded from now on (in this process), in order."""
    from scenekit.ltx2 import pool

    loads: list[str] = []
    real_load = pool.load_transformer_file
    monkeypatch.setattr(
        pool, "load_transformer_file", lambda path, *a, **k: loads.append(path.name) or real_load(path, *a, **k)
    )
    return loads


NO_GUIDANCE_KWARGS = dict(
    guidance_scale=1.0,
    stg_scale=0.0,
    spatio_temporal_guidance_blocks=[],
    guidance_rescale=0.0,
    modality_scale=1.0,
    audio_guidance_scale=1.0,
    audio_stg_scale=0.0,
    audio_guidance_rescale=0.0,
    audio_modality_scale=1.0,
)
"""An LTX-2 pipeline call's guidance off, video and audio alike."""
