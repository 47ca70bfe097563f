"""LTX-Video 0.9.8 renders through scenekit on the CPU with tiny random weights in the real layout and formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scenekit.backends.ltxv import _has_spm
from scenekit.ltx2.tiny import build_tiny_profile_weights as build_ltx2_weights
from scenekit.ltxv.tiny import build_tiny_profile_weights

from conftest import Project, read_video

PROFILE = "ltxv-2b-0.9.8-distilled"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Tiny weights for the LTX-Video profile (shared with test_ltxv_tiny.py in one process) and `ltx2-distilled`."""
    root = tmp_path_factory.getbasetemp() / "ltxv-models"
    if not (root / PROFILE / "model_index.json").is_file():
        build_tiny_profile_weights(root / PROFILE, seed=1, profile=PROFILE)
    build_ltx2_weights(root / "ltx2-distilled", seed=2, profile="ltx2-distilled")
    return root


@pytest.fixture
def ltxv(project: Project, models: Path, monkeypatch) -> Project:
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    project.image("assets/cliff.png", (40, 90, 160), size=(150, 100))
    return project


SCENE = f"""
    scenekit: 1
    defaults: {{model: {PROFILE}, size: 128x96, fps: 24, seed: 5}}
    clips:
      - id: arrival
        prompt: "A lighthouse on a cliff"
        frames: 17
        conditioning: [{{image: assets/cliff.png, frame: 0}}]
      - id: keeper
        continue: arrival
        overlap: 9
        prompt: "The keeper climbs the stairs"
        frames: 8
        drift_control: 1.0
    output: {{file: out.mp4, preset: ultrafast}}
"""


def test_a_continued_ltxv_clip_renders_through_the_multiscale_nodes_and_caches(ltxv: Project):
    ltxv.write(SCENE)
    graph = ltxv.prepare().graph
    assert [n.id for n in graph.ordered() if n.clip == "arrival"] == [
        "arrival/prompt",
        "arrival/pass1",
        "arrival/upsample",
        "arrival/pass2",
        "arrival/decode",
        "arrival/segment",
    ]
    first, second = graph.node("keeper/pass1"), graph.node("keeper/pass2")
    assert first.inputs["context"] == "arrival/decode" and second.inputs["context"] == "arrival/decode"
    assert first.params["context"] == [8, 17]  # the last 9 frames of `arrival`
    assert first.inputs["reference"] == "arrival/pass1" and second.params["drift_control"] is None
    assert (first.params["width"], first.params["height"]) == (64, 32)  # 2/3 of 128x96, down to multiples of 32
    assert (second.params["width"], second.params["height"]) == (128, 64)  # twice pass 1, resized to 128x96
    frames, _, _ = read_video(ltxv.render().output)
    assert frames.shape == (17 + 8, 96, 128, 3)
    assert np.ptp(frames.astype(int)) > 10  # the model ran: random weights give texture, not one flat colour
    assert ltxv.planned_runs() == {}
    prepared = ltxv.prepare()

    def latents(node: str) -> torch.Tensor:
        entry = prepared.cache.open(prepared.graph.node(node).key)
        assert entry is not None
        return load_file(str(entry / "latents.safetensors"))["latents"]

    drifted, reference = latents("keeper/pass1"), latents("arrival/pass1")  # drift control 1: the first clip's colours
    torch.testing.assert_close(drifted.mean(dim=(0, 2, 3, 4)), reference.mean(dim=(0, 2, 3, 4)), atol=1e-4, rtol=0)


def test_editing_a_pass2_setting_reruns_pass2_and_decode_only(ltxv: Project, monkeypatch, tmp_path):
    ltxv.write(SCENE)
    ltxv.render()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    source = Path(__file__).resolve().parents[1] / "scenekit" / "profiles" / f"{PROFILE}.yaml"
    edited = source.read_text().replace("timesteps: [0.9094, 0.7250, 0.4219]", "timesteps: [0.9094, 0.4219]")
    assert edited != source.read_text()
    (profiles / f"{PROFILE}.yaml").write_text(edited)
    monkeypatch.setenv("SCENEKIT_PROFILE_PATH", str(profiles))
    runs = ltxv.planned_runs()
    assert {"arrival/pass2", "arrival/decode"} <= set(runs)
    assert not {"arrival/prompt", "arrival/pass1", "arrival/upsample"} & set(runs)


def test_a_video_keyframe_off_the_8_frame_grid_is_a_located_error(ltxv: Project):
    ltxv.write(f"""
        scenekit: 1
        defaults: {{model: {PROFILE}, size: 128x96}}
        clips:
          - {{id: a, prompt: x, frames: 25}}
          - {{id: b, prompt: y, frames: 25, conditioning: [{{clip: a, frames: 9, frame: 5}}]}}
    """)
    from scenekit.errors import SpecError

    with pytest.raises(SpecError) as error:
        ltxv.prepare()
    text = str(error.value.issues[0].render())
    assert "clips[1].conditioning[0]" in text and "multiple of 8" in text and "scene.yaml" in text


def test_a_scene_mixing_ltx2_and_ltxv_chains_both_ways_with_silence_for_ltxv(ltxv: Project):
    ltxv.write(f"""
        scenekit: 1
        defaults: {{model: {PROFILE}, size: 256x256, fps: 24, seed: 3}}
        clips:
          - {{id: dawn, model: ltx2-distilled, prompt: "Dawn", frames: 9}}
          - {{id: walk, continue: dawn, overlap: 9, prompt: "A walk", frames: 9}}
          - {{id: back, model: ltx2-distilled, continue: walk, overlap: 9, prompt: "Back", frames: 8}}
        output: {{file: out.mp4, preset: ultrafast}}
    """)
    graph = ltxv.prepare().graph
    assert graph.node("walk/pass1").inputs["context"] == "dawn/decode"  # LTX-2 pixels condition LTX-Video
    assert graph.node("back/stage1").inputs["context"] == "walk/decode"  # and the reverse
    result = ltxv.render()
    frames, _, _ = read_video(result.output)
    assert frames.shape == (9 + 9 + 8, 256, 256, 3)
    import av

    with av.open(str(result.output)) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(container.streams.audio[0])], axis=1)
        rate = container.streams.audio[0].rate
    dawn, walk = audio[:, : int(rate * 8 / 24)], audio[:, int(rate * 10 / 24) : int(rate * 17 / 24)]
    assert np.abs(dawn).max() > 1e-3 and np.abs(walk).max() < 1e-4  # LTX-2's audio, then silence


@pytest.mark.skipif(_has_spm(), reason="sentencepiece and protobuf are installed here")
def test_a_sentencepiece_only_tokenizer_without_its_reader_is_a_located_error(ltxv: Project, models: Path, tmp_path):
    import shutil

    from scenekit.errors import SpecError

    folder = tmp_path / "weights"
    shutil.copytree(models / PROFILE, folder)
    (folder / "tokenizer" / "tokenizer.json").unlink()
    (folder / "tokenizer" / "spiece.model").write_bytes(b"")  # as the hub's T5 tokenizer folder may hold it
    ltxv.write(f"""
        scenekit: 1
        models: {{{PROFILE}: {folder}}}
        clips: [{{id: a, prompt: x, frames: 9, model: {PROFILE}, size: 128x96}}]
    """)
    with pytest.raises(SpecError) as error:
        ltxv.prepare(allow_outside=True)
    text = error.value.issues[0].render()
    assert "clips[0].model" in text and "pip install 'scenekit[ltxv]'" in text


def test_the_dev_profile_guides_by_its_schedules_and_the_clip_knobs(ltxv: Project, models: Path, tmp_path):
    import shutil

    from scenekit.ltxv.tiny import build_tiny_checkpoint

    dev, folder = "ltxv-13b-0.9.8-dev", tmp_path / "dev"
    shutil.copytree(models / PROFILE, folder)
    build_tiny_checkpoint(folder, f"{dev}.safetensors")
    ltxv.write(f"""
        scenekit: 1
        models: {{{dev}: {folder}}}
        clips: [{{id: a, prompt: x, frames: 9, model: {dev}, size: 128x96, stg: 0.5}}]
    """)
    graph = ltxv.prepare(allow_outside=True).graph
    assert graph.node("a/prompt").params["negative_prompt"].startswith("worst quality")  # the config's default
    first, second = graph.node("a/pass1").params, graph.node("a/pass2").params
    assert first["guidance"]["cfg"] == [1, 1, 6, 8, 6, 1, 1] and first["guidance"]["stg"] == 0.5  # the knob
    assert first["guidance"]["stg_blocks"][1] == [11, 25, 35, 39] and second["guidance"]["stg_blocks"] == [27]
    assert len(first["timesteps"]) == 27 and len(second["timesteps"]) == 13  # 30 less the last 3; steps 17-29
