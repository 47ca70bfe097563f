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


DEV = "ltxv-13b-0.9.8-dev"
DEV_SOURCE = Path(__file__).resolve().parents[1] / "scenekit" / "profiles" / f"{DEV}.yaml"


@pytest.fixture
def dev(ltxv: Project, models: Path, tmp_path: Path) -> Path:
    """A folder of tiny weights holding the dev profile's checkpoint."""
    import shutil

    from scenekit.ltxv.tiny import build_tiny_checkpoint

    folder = tmp_path / "dev"
    shutil.copytree(models / PROFILE, folder)
    build_tiny_checkpoint(folder, f"{DEV}.safetensors")
    return folder


def _dev_profile(monkeypatch, folder: Path, replace: dict[str, str]) -> None:
    """The dev profile with text replaced, found before the built-in one."""
    text = DEV_SOURCE.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    folder.mkdir(exist_ok=True)
    (folder / f"{DEV}.yaml").write_text(text)
    monkeypatch.setenv("SCENEKIT_PROFILE_PATH", str(folder))


def _keys(project: Project) -> dict[str, str]:
    return {node.id: node.key for node in project.prepare(allow_outside=True).graph.ordered()}


def test_cfg_star_rescale_is_in_the_key_of_the_passes_it_acts_on(ltxv: Project, dev: Path, monkeypatch, tmp_path):
    ltxv.write(f"""
        scenekit: 1
        models: {{{DEV}: {dev}}}
        clips: [{{id: a, prompt: x, frames: 9, model: {DEV}, size: 128x96}}]
    """)
    graph = ltxv.prepare(allow_outside=True).graph
    assert graph.node("a/pass1").params["guidance"]["cfg_star_rescale"] is True  # as the official config
    assert graph.node("a/pass2").params["guidance"]["cfg_star_rescale"] is False  # no CFG in pass 2: no effect
    before = _keys(ltxv)
    first = "      timesteps: [1.0, 0.996, 0.9933, 0.9850, 0.9767, 0.9008, 0.6180]\n      cfg_star_rescale: true"
    _dev_profile(monkeypatch, tmp_path / "off1", {first: first.replace("true", "false")})
    after = _keys(ltxv)
    changed = {node for node in before if before[node] != after[node]}
    assert changed == {"a/pass1", "a/upsample", "a/pass2", "a/decode", "a/segment", "stitch"}  # pass 1 and on
    _dev_profile(monkeypatch, tmp_path / "off2", {"stg_blocks: [27], cfg_star_rescale: true": "stg_blocks: [27]"})
    assert _keys(ltxv) == before


def test_a_tiny_dev_render_with_cfg_star_and_a_clip_step_cache(ltxv: Project, dev: Path, monkeypatch, tmp_path):
    # the tiny transformer has 2 blocks: STG on block 1; fewer steps, so that the test is quick
    _dev_profile(
        monkeypatch,
        tmp_path / "tiny",
        {
            "[[], [11, 25, 35, 39], [22, 35, 39], [28], [28], [28], [28]]": "[[], [1], [0, 1], [1], [1], [1], [1]]",
            "stg_blocks: [27]": "stg_blocks: [1]",
            "steps: 30\n    skip_final: 3": "steps: 10\n    skip_final: 1",
            "steps: 30\n    skip_initial: 17": "steps: 10\n    skip_initial: 7",
        },
    )
    ltxv.write(f"""
        scenekit: 1
        models: {{{DEV}: {dev}}}
        defaults: {{step_cache: 0.05}}
        clips: [{{id: a, prompt: x, frames: 9, model: {DEV}, size: 128x96}}]
        output: {{file: out.mp4, preset: ultrafast}}
    """)
    frames, _, _ = read_video(ltxv.render(allow_outside=True).output)
    assert frames.shape == (9, 96, 128, 3) and np.ptp(frames.astype(int)) > 10
    ltxv.write(ltxv.spec.read_text().replace("step_cache: 0.05", "step_cache: off"))
    runs = ltxv.planned_runs(allow_outside=True)
    assert runs["a/pass1"] == "defaults.step_cache changed" and "a/prompt" not in runs
    ltxv.write(ltxv.spec.read_text().replace("step_cache: off", "step_cache: 0.05, stg: 2"))
    assert ltxv.planned_runs(allow_outside=True)["a/pass1"] == "defaults.stg changed"


def test_a_clip_step_cache_overrides_the_profile_in_the_sampling_nodes_only(
    ltxv: Project, dev: Path, monkeypatch, tmp_path
):
    scene = f"""
        scenekit: 1
        models: {{{DEV}: {dev}}}
        defaults: {{model: {DEV}, size: 128x96}}
        clips:
          - {{id: a, prompt: x, frames: 9}}
          - {{id: b, prompt: y, frames: 9}}
    """
    ltxv.write(scene)
    plain = ltxv.prepare(allow_outside=True).graph
    assert plain.node("a/pass1").params["step_cache"] is None  # the built-in profile runs every step
    ltxv.write(
        scene.replace("size: 128x96}", "size: 128x96, step_cache: 0.05}").replace(
            "y, frames: 9", "y, frames: 9, step_cache: off"
        )
    )
    cached = ltxv.prepare(allow_outside=True).graph
    for number in (1, 2):
        node = cached.node(f"a/pass{number}")
        assert node.params["step_cache"] == 0.05 and node.sources["step_cache"] == "defaults.step_cache"
        assert {**node.params, "step_cache": None} == plain.node(f"a/pass{number}").params  # nothing else moved
    changed = {n.id for n in cached.ordered() if n.key != plain.node(n.id).key}
    assert changed == {"a/pass1", "a/upsample", "a/pass2", "a/decode", "a/segment", "stitch"}  # b: off, as before
    assert all(cached.node(f"a/{n}").params == plain.node(f"a/{n}").params for n in ("prompt", "upsample", "decode"))
    _dev_profile(monkeypatch, tmp_path / "cached", {"skip_initial: 17": "skip_initial: 17\n    step_cache: 0.2"})
    graph = ltxv.prepare(allow_outside=True).graph
    assert graph.node("b/pass2").params["step_cache"] is None  # `off` turns the profile's off
    ltxv.write(scene)
    assert ltxv.prepare(allow_outside=True).graph.node("b/pass2").params["step_cache"] == 0.2  # the profile's


@pytest.mark.parametrize(
    ("setting", "model", "message"),
    [
        ("step_cache: 2", DEV, "clips[0].step_cache: Input should be less than or equal to 1 (got 2)"),
        ("step_cache: fast", DEV, "clips[0].step_cache: Input should be a valid number"),
        ("step_cache: 0.05", "ltx2-dev", "clips[0].step_cache: model `ltx2-dev` has no `step_cache` setting"),
    ],
)
def test_a_bad_step_cache_is_a_located_error(project: Project, setting: str, model: str, message: str):
    from typer.testing import CliRunner

    from scenekit.cli import app

    project.write(f"""
        scenekit: 1
        clips:
          - id: a
            prompt: x
            frames: 9
            model: {model}
            {setting}
    """)
    result = CliRunner().invoke(app, ["validate", str(project.spec)])
    assert result.exit_code == 2
    assert f"scene.yaml:7:17: error: {message}" in result.output  # at the value
    hint = "or `off` for every step in full" if model == DEV else f"(`step_cache` is a setting of {DEV})"
    assert hint in result.output
