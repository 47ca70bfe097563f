"""LTX-2 renders through scenekit on the CPU with tiny random weights in the real folder layout."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from scenekit.cli import app
from scenekit.ltx2.tiny import build_tiny_profile_weights
from scenekit.runtime.pool import MODELS
from scenekit.runtime.speed import Numerics

from conftest import Project, StartedNodes, count_transformer_loads, read_video

EAGER = Numerics("float32", compiled=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for seed, profile in enumerate(("ltx2-distilled", "ltx2-distilled-fp8", "ltx2-dev-fp8"), start=1):
        build_tiny_profile_weights(root / profile, seed=seed, profile=profile)  # with the single files they name
    return root


@pytest.fixture
def ltx(project: Project, models: Path, monkeypatch) -> Project:
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    project.image("assets/cliff.png", (40, 90, 160), size=(300, 200))
    return project


SCENE = """
    scenekit: 1
    defaults: {model: ltx2-distilled, size: 256x256, fps: 24, seed: 5}
    clips:
      - id: arrival
        prompt: "A lighthouse on a cliff"
        frames: 17
        conditioning: [{image: assets/cliff.png, frame: 0}]
      - id: keeper
        continue: arrival
        overlap: 9
        prompt: "The keeper climbs the stairs"
        frames: 16
        drift_control: 0.5
      - id: beam
        model: ltx2-distilled-fp8
        prompt: "The beam sweeps the sea"
        frames: 17
        transition: {type: crossfade, duration: 4f}
    output: {file: out.mp4, preset: ultrafast}
"""


def test_three_ltx2_clips_render_with_audio_and_cache(ltx: Project):
    ltx.write(SCENE)
    graph = ltx.prepare().graph
    assert [n.id for n in graph.ordered() if n.clip == "arrival"] == [
        "arrival/prompt",
        "arrival/stage1",
        "arrival/upsample",
        "arrival/stage2",
        "arrival/decode",
        "arrival/segment",
    ]
    assert graph.node("keeper/stage1").inputs["context"] == "arrival/decode"
    assert graph.node("keeper/stage1").inputs["reference"] == "arrival/stage1"
    assert graph.node("arrival/stage1").params["width"] == 128  # stage 1 at half size
    result = ltx.render()
    frames, _, _ = read_video(result.output)
    assert frames.shape == (17 + 16 + 17 - 4, 256, 256, 3)
    with av.open(str(result.output)) as container:
        assert len(container.streams.audio) == 1
    assert ltx.planned_runs() == {}
    manifest = json.loads(result.manifest.read_text())
    assert set(manifest["profiles"]) == {"ltx2-distilled", "ltx2-distilled-fp8"}


def test_switching_a_clip_to_another_profile_reruns_that_clip_only(ltx: Project):
    ltx.write(SCENE)
    ltx.render()
    ltx.write(SCENE.replace("        model: ltx2-distilled-fp8\n", ""))
    runs = ltx.planned_runs()
    assert {n.split("/")[0] for n in runs} == {"beam", "stitch"}
    assert {"beam/stage1", "beam/stage2", "beam/decode"} <= set(runs)


def test_editing_stage2_settings_only_reruns_stage2_and_after(ltx: Project, monkeypatch, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    source = Path(__file__).resolve().parents[1] / "scenekit" / "profiles" / "ltx2-distilled.yaml"
    edited = source.read_text().replace("noise_scale: 0.909375}", "noise_scale: 0.8}")
    ltx.write(SCENE.replace("        model: ltx2-distilled-fp8\n", ""))
    ltx.render()
    (profiles / "ltx2-distilled.yaml").write_text(edited)
    monkeypatch.setenv("SCENEKIT_PROFILE_PATH", str(profiles))
    runs = ltx.planned_runs()
    assert "arrival/stage2" in runs and "arrival/decode" in runs
    assert not {"arrival/prompt", "arrival/stage1", "arrival/upsample"} & set(runs)


@pytest.fixture
def without_weights(project: Project, monkeypatch) -> Project:
    """A one-clip `ltx2-distilled` spec on a machine that has no weights for it (and no hub access)."""
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.delenv("SCENEKIT_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    project.write("""
        scenekit: 1
        clips: [{id: a, prompt: x, frames: 17, model: ltx2-distilled, size: 256x256}]
    """)
    return project


def test_missing_weights_is_one_clear_error(without_weights: Project):
    project = without_weights
    result = CliRunner().invoke(app, ["render", str(project.spec), "--cache-dir", str(project.cache)])
    assert result.exit_code == 2
    message = result.output
    assert "no weights for model profile `ltx2-distilled`" in message
    assert "$SCENEKIT_MODELS" in message and "Hugging Face cache: Lightricks/LTX-2@" in message
    assert "scenekit fetch ltx2-distilled" in message
    assert "scene.yaml:2:" in message and "clips[0].model" in message  # located where the model was chosen
    assert not project.cache.exists()


def test_validate_needs_no_weights_and_notes_what_rendering_here_needs(without_weights: Project):
    result = CliRunner().invoke(app, ["validate", str(without_weights.spec)])
    assert result.exit_code == 0
    assert ": ok: 1 clips, 17 frames" in result.output
    assert "note: clips[0].model: no weights for model profile `ltx2-distilled`" in result.output


def test_gpu_profiles_refuse_to_run_on_the_cpu_unless_forced(project: Project, monkeypatch, models: Path):
    monkeypatch.delenv("SCENEKIT_DEVICE", raising=False)
    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    project.write("""
        scenekit: 1
        clips: [{id: a, prompt: x, frames: 17, model: ltx2-distilled, size: 256x256}]
    """)
    result = CliRunner().invoke(app, ["render", str(project.spec), "--cache-dir", str(project.cache)])
    assert result.exit_code == 2 and "needs a GPU" in result.output and "SCENEKIT_DEVICE=cpu" in result.output
    assert not project.cache.exists()


def test_knobs_are_validated_against_the_profile(project: Project):
    project.write("""
        scenekit: 1
        clips: [{id: a, prompt: x, frames: 17, model: ltx2-distilled, size: 256x256, steps: 30}]
    """)
    result = CliRunner().invoke(app, ["validate", str(project.spec)])
    assert result.exit_code == 2
    assert "clips[0].steps: model `ltx2-distilled` has no `steps` setting" in result.output


def test_drift_control_pulls_a_drifting_chain_back_to_its_first_clip():
    from scenekit.ltx2.drift import adain

    generator = np.random.default_rng(0)
    first = generator.normal(0.0, 1.0, (1, 8, 3, 4, 4))
    chain = [first + 0.3 * k + generator.normal(0, 0.05, first.shape) for k in range(6)]  # colour creeps clip by clip
    import torch

    reference = torch.tensor(first)
    drift = [abs(float(torch.tensor(c).mean() - reference.mean())) for c in chain]
    controlled = [abs(float(adain(torch.tensor(c), reference, 1.0).mean() - reference.mean())) for c in chain]
    assert drift[-1] > 1.4 and max(controlled) < 1e-6


def test_dev_profile_runs_guided_stage_then_lora_refine(ltx: Project):
    ltx.write("""
        scenekit: 1
        defaults: {model: ltx2-dev-fp8, size: 256x256, fps: 24}
        clips:
          - {id: one, prompt: "a red ball", negative_prompt: "blur", frames: 17, steps: 4, stg: 0, guidance: 4}
        output: {file: out.mp4, preset: ultrafast}
    """)
    graph = ltx.prepare().graph
    assert graph.node("one/stage1").params["guidance"]["cfg"] == 4
    assert graph.node("one/stage2").params["lora"] == {
        "file": "ltx-2-19b-distilled-lora-384.safetensors",
        "strength": 0.6,
    }
    assert graph.node("one/prompt").params["negative_prompt"] == "blur"
    frames, _, _ = read_video(ltx.render().output)
    assert frames.shape == (17, 256, 256, 3)


def test_lora_in_the_published_format_loads_into_transformer_and_connectors(models: Path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from scenekit.ltx2.pool import ModelPool

    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    lora = "ltx-2-19b-distilled-lora-384.safetensors"
    published = load_file(str(models / "ltx2-dev-fp8" / lora))
    assert all(k.startswith(("diffusion_model.", "text_embedding_projection.")) for k in published)
    pipe = ModelPool().pipeline(
        models / "ltx2-dev-fp8", None, {"compute": "float32", "storage": "float32"}, EAGER, lora
    )
    to_q, projection = pipe.transformer.transformer_blocks[0].attn1.to_q, pipe.connectors.text_proj_in
    assert torch.equal(
        to_q.lora_A["ltx_2_19b_distilled_lora_384"].weight,
        published["diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight"],
    )
    x_q, x_p = torch.randn(3, to_q.in_features), torch.randn(3, projection.in_features)
    base_q, base_p = to_q.base_layer(x_q), projection.base_layer(x_p)
    ModelPool.use_lora(pipe, None)
    assert torch.equal(to_q(x_q), base_q) and torch.equal(projection(x_p), base_p)
    ModelPool.use_lora(pipe, {"file": lora, "strength": 0.6})
    delta_q = to_q.lora_B["ltx_2_19b_distilled_lora_384"](to_q.lora_A["ltx_2_19b_distilled_lora_384"](x_q))
    torch.testing.assert_close(to_q(x_q), base_q + 0.6 * delta_q)
    assert not torch.allclose(projection(x_p), base_p)
    ModelPool.use_lora(pipe, None)
    assert torch.equal(to_q(x_q), base_q)


def test_single_file_transformers_load_from_the_published_format_with_fp8_scales(models: Path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from scenekit.ltx2.pool import ModelPool

    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    folder, name = models / "ltx2-distilled-fp8", "ltx-2-19b-distilled-fp8.safetensors"
    published = load_file(str(folder / name))
    key = "model.diffusion_model.transformer_blocks.0.attn1.to_q"
    assert published[f"{key}.weight"].dtype == torch.float8_e4m3fn and f"{key}.weight_scale" in published
    transformer = ModelPool().transformer(folder, name, {"compute": "float32", "storage": "float8_e4m3fn"}, EAGER)
    to_q = transformer.transformer_blocks[0].attn1.to_q
    assert to_q.weight.dtype == torch.float8_e4m3fn  # stored in fp8 between uses
    expected = published[f"{key}.weight"].float() * published[f"{key}.weight_scale"].float()
    assert torch.equal(to_q.weight.float(), expected.to(torch.float8_e4m3fn).float())
    in_folder = ModelPool().transformer(folder, None, {"compute": "float32", "storage": "float32"}, EAGER)
    assert not torch.allclose(
        in_folder.transformer_blocks[0].attn1.to_q.weight, expected, atol=1e-3
    )  # the file's, not transformer/


def test_a_checkpoint_file_brings_its_own_text_connectors(models: Path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from scenekit.ltx2.pool import ModelPool

    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    folder, name = models / "ltx2-distilled", "ltx-2-19b-distilled.safetensors"
    published = load_file(str(folder / name))
    pool = ModelPool()
    from_file = pool.pipeline(folder, name, {"compute": "float32", "storage": "float32"}, EAGER).connectors
    from_folder = pool.pipeline(folder, None, {"compute": "float32", "storage": "float32"}, EAGER).connectors
    assert torch.equal(from_file.text_proj_in.weight, published["text_embedding_projection.aggregate_embed.weight"])
    registers = published["model.diffusion_model.video_embeddings_connector.learnable_registers"]
    assert torch.equal(from_file.video_connector.learnable_registers, registers)
    assert not torch.equal(from_folder.video_connector.learnable_registers, registers)


def test_a_missing_lora_is_reported_before_any_work(project: Project, models: Path, monkeypatch, tmp_path: Path):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(models / "ltx2-dev-fp8", weights)
    (weights / "ltx-2-19b-distilled-lora-384.safetensors").unlink()
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    project.write(f"""
        scenekit: 1
        models: {{ltx2-dev-fp8: {weights}}}
        clips: [{{id: a, prompt: x, frames: 17, model: ltx2-dev-fp8, size: 256x256}}]
    """)
    result = CliRunner().invoke(
        app, ["render", str(project.spec), "--cache-dir", str(project.cache), "--allow-outside"]
    )
    assert result.exit_code == 2
    assert "LoRA ltx-2-19b-distilled-lora-384.safetensors, which is not in" in result.output
    assert "scenekit fetch ltx2-dev-fp8" in result.output and not project.cache.exists()


def test_clips_of_one_profile_run_together_and_a_full_gpu_loads_each_transformer_once(
    ltx: Project, models: Path, monkeypatch
):
    """With no room for two transformers the pool evicts; the order makes that cost one load per profile."""
    import shutil

    from scenekit.engine.session import render
    from scenekit.ltx2 import pool
    from scenekit.ltx2.tiny import build_tiny_transformer_file

    loads = count_transformer_loads(monkeypatch)
    monkeypatch.setattr("scenekit.runtime.memory.free_gpu_bytes", lambda device: 0)  # a GPU with no room to spare
    pool.POOL.clear()
    weights = ltx.root / "weights"  # one snapshot for both profiles, as on the hub
    shutil.copytree(models / "ltx2-distilled", weights)
    build_tiny_transformer_file(weights, "ltx-2-19b-distilled-fp8.safetensors", seed=2, storage="float8_e4m3fn")
    ltx.write(SCENE.replace("clips:", "models: {ltx2-distilled: weights, ltx2-distilled-fp8: weights}\n    clips:", 1))
    recorder = StartedNodes()
    render(ltx.prepare(), recorder)
    assert loads == ["ltx-2-19b-distilled.safetensors", "ltx-2-19b-distilled-fp8.safetensors"]
    order = recorder.started
    assert sorted(order[:3]) == ["arrival/prompt", "beam/prompt", "keeper/prompt"]  # one text-encoder session
    sampling = [n.split("/")[0] for n in order if "/stage" in n]
    assert sampling == ["arrival", "arrival", "keeper", "keeper", "beam", "beam"]
    assert order[-1] == "stitch"
    assert len(MODELS.loaded("transformer")) == 1  # the bf16 one was freed
    pool.POOL.clear()


def test_models_stay_loaded_across_renders_in_one_process(ltx: Project, monkeypatch):
    """As in `scenekit watch`: a second render after an edit reuses the loaded transformers."""
    from scenekit.ltx2 import pool

    loads: list[str] = []
    real_load = pool.load_transformer_file
    monkeypatch.setattr(
        pool, "load_transformer_file", lambda path, *a, **k: loads.append(path.name) or real_load(path, *a, **k)
    )
    pool.POOL.clear()
    ltx.write(SCENE)
    ltx.render()
    assert sorted(loads) == ["ltx-2-19b-distilled-fp8.safetensors", "ltx-2-19b-distilled.safetensors"]
    ltx.write(SCENE.replace("The beam sweeps the sea", "The beam sweeps the fog"))
    assert sorted(ltx.render().ran) == [
        "beam/decode",
        "beam/prompt",
        "beam/segment",
        "beam/stage1",
        "beam/stage2",
        "beam/upsample",
        "stitch",
    ]
    assert len(loads) == 2  # nothing loaded again
    pool.POOL.clear()


def weights_named_by_config(project: Project, monkeypatch, config: Path, text: str) -> str:
    """The weights folder a one-clip `ltx2-distilled` spec resolves to, with `text` as the user config."""
    config.write_text(text)
    monkeypatch.setenv("SCENEKIT_CONFIG", str(config))
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.delenv("SCENEKIT_MODELS", raising=False)
    project.write("""
        scenekit: 1
        clips: [{id: a, prompt: x, frames: 9, model: ltx2-distilled, size: 256x256}]
    """)
    return project.prepare().graph.node("a/stage1").meta["weights"]


def test_the_user_config_says_where_weights_are(project: Project, models: Path, monkeypatch, tmp_path: Path):
    import shutil

    config_dir = tmp_path / "config"
    shutil.copytree(models / "ltx2-distilled", config_dir / "weights" / "distilled")
    weights = weights_named_by_config(
        project, monkeypatch, config_dir / "config.yaml", "models:\n  ltx2-distilled: weights/distilled\n"
    )  # relative to the file
    assert weights == str((config_dir / "weights" / "distilled").resolve())
    result = CliRunner().invoke(app, ["profiles"])
    assert result.exit_code == 0 and "found" in result.output
    # the spec's own mapping wins
    project.write(f"""
        scenekit: 1
        models: {{ltx2-distilled: {models / "ltx2-distilled-fp8"}}}
        clips: [{{id: a, prompt: x, frames: 9, model: ltx2-distilled, size: 256x256}}]
    """)
    assert project.prepare(allow_outside=True).graph.node("a/stage1").meta["weights"] == str(
        models / "ltx2-distilled-fp8"
    )


def test_an_invalid_user_config_is_a_located_error(project: Project, monkeypatch, tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text("modles:\n  ltx2-distilled: /data\n")
    monkeypatch.setenv("SCENEKIT_CONFIG", str(config))
    project.write("""
        scenekit: 1
        clips: [{id: a, prompt: x, frames: 9}]
    """)
    result = CliRunner().invoke(app, ["render", str(project.spec), "--cache-dir", str(project.cache)])
    assert result.exit_code == 2
    assert f"{config}:1:1: error: modles: unknown key `modles`" in result.output and "models" in result.output
    assert not project.cache.exists()


def test_fetch_downloads_only_what_the_profile_needs_and_says_how_to_pin_it(monkeypatch, tmp_path: Path):
    import huggingface_hub

    asked = {}

    def snapshot_download(repo, revision, allow_patterns):
        asked.update(repo=repo, revision=revision, patterns=allow_patterns)
        return str(tmp_path / "snapshots" / "0123abcd")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    result = CliRunner().invoke(app, ["fetch", "ltx2-distilled-fp8"])
    assert result.exit_code == 0, result.output
    assert asked["repo"] == "Lightricks/LTX-2"
    assert "ltx-2-19b-distilled-fp8.safetensors" in asked["patterns"] and "transformer/config.json" in asked["patterns"]
    assert "transformer/*" not in asked["patterns"]  # the diffusers transformer (another model) is not downloaded
    assert "models: {ltx2-distilled-fp8: Lightricks/LTX-2@0123abcd}" in result.output.replace("\n", "")


def test_weights_from_the_hugging_face_cache_are_pinned_to_the_snapshot_and_complete(
    project: Project, models: Path, monkeypatch, tmp_path: Path
):
    """A hub snapshot (laid out as `huggingface_hub` caches it) is found offline; node keys name its commit;
    a snapshot without the profile's checkpoint file is an error, never a silent fall back to `transformer/`."""
    import shutil

    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--Lightricks--LTX-2"
    shutil.copytree(models / "ltx2-distilled", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.delenv("SCENEKIT_MODELS", raising=False)
    project.write("""
        scenekit: 1
        clips: [{id: a, prompt: x, frames: 9, model: ltx2-distilled, size: 256x256}]
    """)
    stage1 = project.prepare().graph.node("a/stage1")
    assert stage1.profile.startswith(f"hf:Lightricks/LTX-2@{commit}:ltx-2-19b-distilled.safetensors")
    (repo / "snapshots" / commit / "ltx-2-19b-distilled.safetensors").unlink()
    result = CliRunner().invoke(app, ["render", str(project.spec), "--cache-dir", str(project.cache)])
    assert result.exit_code == 2
    assert "needs ltx-2-19b-distilled.safetensors, which is not in the snapshot" in result.output
    assert "scenekit fetch ltx2-distilled" in result.output


def test_a_spec_may_not_point_at_weights_outside_its_project(project: Project, models: Path):
    project.write(f"""
        scenekit: 1
        models: {{ltx2-distilled: {models / "ltx2-distilled"}}}
        clips: [{{id: a, prompt: x, frames: 9, model: ltx2-distilled, size: 256x256}}]
    """)
    result = CliRunner().invoke(app, ["validate", str(project.spec)])
    assert result.exit_code == 2
    assert "scene.yaml:2:" in result.output and "models.ltx2-distilled" in result.output
    assert "outside the project folder" in result.output and "user config" in result.output


def test_a_weights_folder_may_start_with_a_tilde(project: Project, models: Path, monkeypatch, tmp_path: Path):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "distilled").symlink_to(models / "ltx2-distilled")
    monkeypatch.setenv("HOME", str(home))
    weights = weights_named_by_config(
        project, monkeypatch, tmp_path / "config.yaml", "models: {ltx2-distilled: ~/models/distilled}\n"
    )
    assert weights == str((home / "models" / "distilled").resolve())


def test_guidance_1_keeps_audio_cfg_and_its_negative_prompt(ltx: Project):
    """The `guidance` knob sets the video CFG only; the audio CFG still needs negative embeddings."""
    ltx.write("""
        scenekit: 1
        defaults: {model: ltx2-dev-fp8, size: 256x256, fps: 24}
        clips:
          - {id: one, prompt: "a red ball", frames: 9, steps: 2, stg: 0, guidance: 1}
        output: {file: out.mp4, preset: ultrafast}
    """)
    graph = ltx.prepare().graph
    assert graph.node("one/stage1").params["guidance"]["audio_cfg"] > 1
    assert graph.node("one/prompt").params["negative_prompt"] == ""
    assert read_video(ltx.render().output)[0].shape == (9, 256, 256, 3)


def test_a_lora_file_is_read_once_however_many_nodes_use_it(ltx: Project, monkeypatch):
    from diffusers import LTX2Pipeline

    from scenekit.ltx2 import pool

    reads: list[str] = []
    real = LTX2Pipeline.lora_state_dict
    monkeypatch.setattr(LTX2Pipeline, "lora_state_dict", lambda path, **kw: reads.append(path) or real(path, **kw))
    pool.POOL.clear()
    ltx.write("""
        scenekit: 1
        defaults: {model: ltx2-dev-fp8, size: 256x256, fps: 24}
        clips:
          - {id: one, prompt: "a red ball", frames: 17, steps: 2, stg: 0}
          - {id: two, prompt: "a blue ball", frames: 17, steps: 2, stg: 0}
        output: {file: out.mp4, preset: ultrafast}
    """)
    ltx.render()
    assert len(reads) == 1  # transformer and connector layers from one read, not again for the second clip
    pool.POOL.clear()


def test_drift_control_in_a_render_pulls_the_continuation_towards_the_chain_start(ltx: Project):
    """keeper (drift_control 0.5) against the same render without it: its stage-1 latents' channel means
    move half way to arrival's."""
    import torch
    from safetensors.torch import load_file

    def latents(node_id: str) -> torch.Tensor:
        key = ltx.prepare().graph.node(node_id).key
        return load_file(str(next(ltx.cache.glob(f"objects/*/{key}")) / "latents.safetensors"))["video"]

    def channel_means(video: torch.Tensor) -> torch.Tensor:
        return video.float().mean(dim=(0, 2, 3, 4))

    ltx.write(SCENE)
    ltx.render()
    reference, controlled = channel_means(latents("arrival/stage1")), channel_means(latents("keeper/stage1"))
    ltx.write(SCENE.replace("        drift_control: 0.5\n", ""))
    ltx.render()
    free = channel_means(latents("keeper/stage1"))
    torch.testing.assert_close(controlled - reference, 0.5 * (free - reference), atol=1e-4, rtol=1e-3)
