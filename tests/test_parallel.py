"""One clip across ranks (`--gpus-per-clip`): LTX-2 context parallelism on the CPU with the gloo backend."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import scenekit.profiles
from scenekit.cli import app
from scenekit.engine.events import SilentEvents
from scenekit.engine.session import RenderOptions, prepare, render
from scenekit.ltx2.context_parallel import DropUniformMasks, ltx2_plan
from scenekit.ltx2.ranks import StageCall, split_problem
from scenekit.ltx2.tiny import build_tiny_profile_weights
from scenekit.media.video import read_frames
from scenekit.runtime.parallel import RankFailed, close_groups, rank_group, use_gpus_per_clip
from scenekit.runtime.speed import Numerics

from conftest import Project

SCENE = """
    scenekit: 1
    defaults: {model: ltx2-distilled-f32, size: 256x256, fps: 24, seed: 5}
    clips:
      - id: arrival
        prompt: "A lighthouse on a cliff"
        frames: 17
        conditioning: [{image: assets/cliff.png, frame: 0}]
    output: {file: out.mp4, preset: ultrafast}
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_profile_weights(root / "ltx2-distilled", seed=1, profile="ltx2-distilled")
    (root / "ltx2-distilled-f32").symlink_to(root / "ltx2-distilled")
    return root


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> Path:
    """`ltx2-distilled` computing in float32, so that frames compare to float32 rounding (bfloat16's would
    differ by a bfloat16 step, which the tiny random VAE amplifies)."""
    folder = tmp_path_factory.mktemp("profiles")
    text = (Path(scenekit.profiles.__file__).parent / "ltx2-distilled.yaml").read_text()
    text = text.replace("name: ltx2-distilled", "name: ltx2-distilled-f32")
    (folder / "f32.yaml").write_text(
        text.replace("compute: bfloat16, storage: bfloat16", "compute: float32, storage: float32")
    )
    return folder


@pytest.fixture
def ltx(project: Project, models: Path, profiles: Path, monkeypatch) -> Project:
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_PROFILE_PATH", str(profiles))
    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    project.image("assets/cliff.png", (40, 90, 160), size=(300, 200))
    yield project
    close_groups()
    use_gpus_per_clip(1)


def _render(project: Project, gpus: int) -> tuple[np.ndarray, torch.Tensor, dict[str, str]]:
    """The decoded frames (lossless, from the cache: the H.264 output would add the encoder's decisions), the
    final video latents and the key of every node, rendered into a cache of its own."""
    options = RenderOptions(cache_dir=project.root / f"cache{gpus}", output=project.root / f"out{gpus}.mp4")
    result = render(prepare(project.spec, RenderOptions(**{**options.__dict__, "gpus_per_clip": gpus})), SilentEvents())
    keys = {node["id"]: node["key"] for node in json.loads(result.manifest.read_text())["nodes"]}
    entry = {node: project.root / f"cache{gpus}" / "objects" / keys[node][:2] / keys[node] for node in keys}
    latents = load_file(entry["arrival/stage2"] / "latents.safetensors")["video"]
    return read_frames(entry["arrival/decode"] / "frames.mkv", 0, 17), latents, keys


def test_a_clip_rendered_across_two_ranks_matches_one_rank(ltx: Project, caplog):
    ltx.write(SCENE)
    frames_one, latents_one, keys_one = _render(ltx, 1)
    with caplog.at_level(logging.INFO, logger="scenekit"):
        frames_two, latents_two, keys_two = _render(ltx, 2)
    assert "parallel: started 2 ranks on cpu" in caplog.text and "runs on one GPU" not in caplog.text
    assert keys_two == keys_one  # the keys do not depend on the GPUs
    assert torch.allclose(latents_two, latents_one, atol=1e-5), (latents_two - latents_one).abs().max()
    diff = np.abs(frames_two.astype(int) - frames_one.astype(int)).max()
    print(f"max abs diff of the frames, 2 ranks vs 1: {diff} of 255")
    assert diff <= 1


def _fails_on_rank_1(rank, payload):
    if rank.rank == 1:
        raise RuntimeError(f"no {payload}")
    return payload


def test_a_failing_rank_stops_the_group_and_the_next_job_starts_a_fresh_one(monkeypatch):
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    group = rank_group(2)
    try:
        with pytest.raises(RankFailed, match=r"rank 1 of 2 failed(.|\n)*RuntimeError: no luck"):
            group.run(_fails_on_rank_1, "luck")
        assert not group.alive
        assert rank_group(2) is not group
    finally:
        close_groups()


def test_the_plan_splits_video_tokens_in_the_rope_layout_and_keeps_audio_and_text_whole():
    for rope_type, dim, dims in (("split", 2, 4), ("interleaved", 1, 3)):
        plan = ltx2_plan(SimpleNamespace(config=SimpleNamespace(rope_type=rope_type)))
        for module in ("rope", "cross_attn_rope"):
            assert [(plan[module][i].split_dim, plan[module][i].expected_dims) for i in (0, 1)] == [(dim, dims)] * 2
        assert set(plan[""]) == {"hidden_states", "timestep"}  # audio and text stay whole
        assert plan["proj_out"].gather_dim == 1


def test_text_masks_that_mask_nothing_are_dropped_and_others_refused():
    hook = DropUniformMasks()
    _, kwargs = hook.pre_forward(None, encoder_attention_mask=torch.ones(2, 5), audio_encoder_attention_mask=None)
    assert kwargs["encoder_attention_mask"] is None
    with pytest.raises(ValueError, match="masks some text tokens"):
        hook.pre_forward(None, audio_encoder_attention_mask=torch.tensor([[1.0, 1.0, 0.0]]))


def test_stages_that_cannot_split_run_on_one_gpu():
    call = StageCall(
        Path("w"), None, {}, Numerics("float32", False), None, [], {"num_frames": 17, "height": 64, "width": 64}
    )
    assert split_problem(call, 2) is None  # 3 x 2 x 2 tokens
    assert "do not split" in split_problem(call, 5)
    keyframe = StageCall(**{**call.__dict__, "kwargs": {**call.kwargs, "conditions": [(None, 8, 1.0)]}})
    assert "keyframes" in split_problem(keyframe, 2)
    control = StageCall(**{**call.__dict__, "kwargs": {**call.kwargs, "references": [(None, 1.0)]}})
    assert "IC-LoRA" in split_problem(control, 2)


def test_gpus_per_clip_is_checked_on_the_command_line(project: Project):
    spec = project.write(SCENE)
    for args, message in (
        (["--gpus-per-clip", "0"], "must be at least 1"),
        (["--gpus-per-clip", "0", "--executor", "ray"], "must be at least 1"),
    ):
        result = CliRunner().invoke(app, ["render", str(spec), *args])
        assert result.exit_code == 2 and message in result.output, result.output
