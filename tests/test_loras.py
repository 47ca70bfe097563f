"""Per-clip LoRAs on LTX-2 profiles: keys, adapters beside a loaded transformer, located errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from scenekit.cli import app
from scenekit.ltx2.tiny import build_tiny_lora, build_tiny_profile_weights, build_tiny_transformer_file
from scenekit.runtime.speed import Numerics

from conftest import Project, StartedNodes, count_transformer_loads, read_video

EAGER = Numerics("float32", compiled=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_profile_weights(root / "ltx2-distilled", seed=1, profile="ltx2-distilled")
    # `ltx2-distilled-fp8`: the same folders, its transformer file stored in float8 with scales
    build_tiny_transformer_file(root / "ltx2-distilled", FP8_FILE, seed=1, storage="float8_e4m3fn")
    (root / "ltx2-distilled-fp8").symlink_to(root / "ltx2-distilled")
    return root


FP8_FILE = "ltx-2-19b-distilled-fp8.safetensors"


@pytest.fixture
def ltx(project: Project, models: Path, monkeypatch) -> Project:
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    folder = models / "ltx2-distilled"
    (project.root / "loras").mkdir()
    build_tiny_lora(folder, project.root / "loras" / "style.safetensors", seed=11)
    build_tiny_lora(folder, project.root / "loras" / "cam.safetensors", seed=12, diffusers_format=True)
    return project


SCENE = """
    scenekit: 1
    defaults:
      model: ltx2-distilled
      size: 256x256
      fps: 24
      loras: [{file: loras/style.safetensors, weight: 0.8}]
    clips:
      - {id: a, prompt: "a red ball", frames: 9}
      - id: b
        prompt: "a blue ball"
        frames: 9
        loras: [{file: loras/style.safetensors, weight: 0}, {file: loras/cam.safetensors, weight: 1.0, stages: [2]}]
      - {id: c, prompt: "a green ball", frames: 9, loras: [{file: loras/style.safetensors, weight: 0.5}]}
    output: {file: out.mp4, preset: ultrafast}
"""


def test_loras_are_in_the_keys_of_the_stages_they_apply_to_and_adapters_load_beside_the_transformer(
    ltx: Project, monkeypatch
):
    from scenekit.engine.session import render
    from scenekit.ltx2 import pool

    loads = count_transformer_loads(monkeypatch)
    pool.POOL.clear()
    pool.POOL.adapter_loads = 0
    ltx.write(SCENE)
    graph = ltx.prepare().graph
    assert graph.node("a/stage1").params["loras"] == [{"file": "lora0", "weight": 0.8}]
    assert "loras" not in graph.node("b/stage1").params  # the default switched off, cam on stage 2 only
    assert graph.node("b/stage2").files["lora0"].written == "loras/cam.safetensors"
    assert "loras" not in graph.node("a/prompt").params
    recorder = StartedNodes()
    result = render(ltx.prepare(), recorder)
    assert read_video(result.output)[0].shape == (27, 256, 256, 3)
    assert loads == ["ltx-2-19b-distilled.safetensors"]  # one transformer for three adapter sets
    assert pool.POOL.adapter_loads == 2  # style once (for a and c), cam once
    sampling = [n.split("/")[0] for n in recorder.started if "/stage" in n]
    assert sampling == ["a", "a", "c", "c", "b", "b"]  # the clips with the style LoRA together

    ltx.write(SCENE.replace("weight: 1.0, stages: [2]", "weight: 0.7, stages: [2]").replace("0.5}", "0.6}"))
    runs = ltx.planned_runs()
    assert set(runs) == {
        "b/stage2",
        "b/decode",
        "b/segment",
        "c/stage1",
        "c/upsample",
        "c/stage2",
        "c/decode",
        "c/segment",
        "stitch",
    }
    assert runs["b/stage2"] == "clips[1].loras[1].weight changed"
    assert runs["c/stage1"] == "clips[2].loras[0].weight changed"
    pool.POOL.clear()


def test_adapters_in_both_formats_stack_at_their_weights_and_switch_off(ltx: Project, models: Path, monkeypatch):
    from scenekit.ltx2.loras import adapter_name
    from scenekit.ltx2.pool import ModelPool
    from scenekit.spec.assets import cached_sha256

    folder = models / "ltx2-distilled"
    pool = ModelPool()
    pipe = pool.pipeline(folder, None, {"compute": "float32", "storage": "float32"}, EAGER)
    transformer = pipe.transformer
    to_q = transformer.transformer_blocks[0].attn1.to_q
    x = torch.randn(3, to_q.in_features)
    base = to_q(x)
    files = [ltx.root / "loras" / "style.safetensors", ltx.root / "loras" / "cam.safetensors"]
    names = [adapter_name(cached_sha256(path)) for path in files]
    for path, name in zip(files, names, strict=True):
        pool.load_adapter(pipe, path, name, "float32")
        pool.load_adapter(pipe, path, name, "float32")  # loaded once
    again = pool.pipeline(folder, None, {"compute": "float32", "storage": "float32"}, EAGER)
    assert pool.adapter_loads == 2 and again.transformer is transformer  # adapters beside it, no reload
    to_q = transformer.transformer_blocks[0].attn1.to_q  # now PEFT's layer around the original
    assert torch.equal(to_q(x), base)  # loaded, not active
    deltas = [to_q.lora_B[name](to_q.lora_A[name](x)) for name in names]
    ModelPool.activate(pipe, [(names[0], 0.8), (names[1], -0.5)])
    torch.testing.assert_close(to_q(x), base + 0.8 * deltas[0] - 0.5 * deltas[1])
    assert "connectors" in type(pipe.connectors).__name__.lower() and names[1] in pipe.connectors.peft_config
    ModelPool.activate(pipe, [])
    assert torch.equal(to_q(x), base)
    stored = pool.pipeline(folder, None, {"compute": "float32", "storage": "float8_e4m3fn"}, EAGER)
    pool.load_adapter(stored, files[0], names[0], "float32")  # beside weights stored in float8
    ModelPool.activate(stored, [(names[0], 1.0)])
    fp8_q = stored.transformer.transformer_blocks[0].attn1.to_q
    assert fp8_q.lora_A[names[0]].weight.dtype == torch.float32 and torch.isfinite(fp8_q(x)).all()
    monkeypatch.setattr("scenekit.ltx2.pool.MAX_ADAPTERS", 1)
    pool.load_adapter(stored, files[1], names[1], "float32")  # the least recently used one makes room
    assert set(stored.transformer.peft_config) == {names[1]}
    pool.load_adapter(stored, files[0], names[0], "float32", needed=frozenset(names))  # one stage needs both
    assert set(stored.transformer.peft_config) == set(names)
    pool.clear()


def _render(project: Project) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["render", str(project.spec), "--cache-dir", str(project.cache)])
    return result.exit_code, result.output


def test_lora_problems_are_located_errors_before_any_work(ltx: Project, models: Path):
    from safetensors.torch import save_file

    save_file(
        {"transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(2, 3072)},
        str(ltx.root / "loras" / "flux.safetensors"),
    )
    clip = "{id: a, prompt: x, frames: 9, model: ltx2-distilled, size: 256x256, loras: [%s]}"
    cases = {
        "{file: loras/nope.safetensors}": "clips[0].loras[0].file: LoRA not found: loras/nope.safetensors",
        "{file: loras/style.safetensors, weight: 3}": "clips[0].loras[0].weight",
        "{file: loras/flux.safetensors}": "does not fit model `ltx2-distilled`: 1 of its 1 weights do not match",
        "{preset: nope}": "clips[0].loras[0]: unknown LoRA preset `nope`",
        "{file: loras/style.safetensors, stages: [3]}": "stage 3 does not exist: this model samples in 2 stage(s)",
    }
    for entry, message in cases.items():
        ltx.write(f"scenekit: 1\nclips: [{clip % entry}]\n")
        code, output = _render(ltx)
        assert code == 2, (entry, output)
        assert message in output and "scene.yaml:2:" in output, (entry, output)
        assert not ltx.cache.exists()
    ltx.write("scenekit: 1\nclips: [{id: a, prompt: x, frames: 9, loras: [{file: loras/style.safetensors}]}]\n")
    code, output = _render(ltx)
    assert code == 2 and "model `preview` takes no LoRAs" in output


def test_a_preset_from_the_user_config(ltx: Project, monkeypatch, tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"loras: {{house: {{file: {ltx.root / 'loras' / 'cam.safetensors'}, weight: 0.3, stages: [2]}}}}\n"
    )
    monkeypatch.setenv("SCENEKIT_CONFIG", str(config))
    ltx.write(
        "scenekit: 1\nclips: [{id: a, prompt: x, frames: 9, model: ltx2-distilled, size: 256x256, loras: [{preset: house}]}]\n"
    )
    graph = ltx.prepare().graph
    assert "loras" not in graph.node("a/stage1").params
    assert graph.node("a/stage2").params["loras"] == [{"file": "lora0", "weight": 0.3}]
    assert graph.node("a/stage2").files["lora0"].path == ltx.root / "loras" / "cam.safetensors"


def test_loras_streamed_by_the_offload_policy_give_the_frames_of_resident_ones_on_fp8_storage(
    ltx: Project, monkeypatch
):
    """LoRA + `--memory offload` (half of the blocks streamed) against LoRA + resident, on the fp8-storage
    profile (so LoRA + fp8 storage renders too). One adapter at a time: stage 2's LoRA unloads stage 1's,
    and the blocks streamed stay the ones the policy chose."""
    from scenekit.ltx2 import pool
    from scenekit.runtime import memory

    monkeypatch.setattr(pool, "MAX_ADAPTERS", 1)
    ltx.write("""
        scenekit: 1
        defaults: {model: ltx2-distilled-fp8, size: 256x256, fps: 24, seed: 4}
        clips:
          - id: a
            prompt: "a red ball"
            frames: 9
            loras: [{file: loras/style.safetensors, stages: [1]}, {file: loras/cam.safetensors, stages: [2]}]
        output: {file: out.mp4, preset: ultrafast}
    """)
    pool.POOL.clear()
    resident, _, _ = read_video(ltx.render(memory="resident").output)
    pool.POOL.clear()
    monkeypatch.setattr(ltx, "cache", ltx.root / "cache-offloaded")
    real_resident_blocks = memory.resident_blocks
    monkeypatch.setattr(memory, "resident_blocks", lambda count, size, room: real_resident_blocks(count, size, size))
    offloaded, _, _ = read_video(ltx.render(memory="offload").output)
    (transformer,) = pool.MODELS.loaded("transformer")
    assert transformer.transformer_blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert len(transformer.peft_config) == 1  # cam only: stage 2 unloaded style
    streamed = [_streams(block) for block in transformer.transformer_blocks]
    assert streamed == [False, True]  # as chosen, though unloading an adapter re-applies diffusers' hooks
    pool.POOL.clear()
    memory.use_memory_policy("auto")
    assert np.array_equal(resident, offloaded)


def _streams(block) -> bool:
    from diffusers.hooks import HookRegistry

    registry = getattr(block, "_diffusers_hook", None)
    return isinstance(registry, HookRegistry) and registry.get_hook("group_offloading") is not None
