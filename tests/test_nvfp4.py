"""NVFP4 checkpoints in the format Lightricks publish: the format itself, loading (dequantized at load),
and an `ltx2-dev-fp4` render on the CPU with tiny weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scenekit import tiny
from scenekit.ltx2.checkpoint import transformer_state
from scenekit.ltx2.tiny import build_tiny_transformer_file
from scenekit.runtime import nvfp4

from conftest import Project, read_video


def test_codes_pack_two_per_byte_high_nibble_first_with_tiled_block_scales():
    weight = torch.zeros(130, 64)
    weight[0, 0], weight[0, 1] = 6.0, -0.5  # codes 7 and 8|1
    weight[129, 48] = 3.0  # row 129, block 3: the second row tile
    packed, scales, tensor_scale = nvfp4.quantize(weight)
    assert packed.dtype == torch.uint8 and packed.shape == (130, 32)
    assert packed[0, 0].item() == (0x7 << 4) | 0x9
    assert scales.dtype == torch.float8_e4m3fn and scales.shape == (256, 4)  # padded to 128 rows, 4 blocks
    flat = scales.reshape(-1).float()
    # the published tile formula: tile = (row/128)*(cols/4) + col/4; offset = tile*512 + (row%32)*16 + ((row%128)/32)*4 + col%4
    row, block = 129, 3
    offset = ((row // 128) * 1 + block // 4) * 512 + (row % 32) * 16 + ((row % 128) // 32) * 4 + block % 4
    assert flat[offset] > 0 and flat[offset] * tensor_scale * 6 == pytest.approx(3.0, rel=0.07)
    assert int((flat > 0).sum()) == 2  # one scale per non-zero block, padding stays zero


def test_dequantize_inverts_quantize_within_fp4_precision():
    torch.manual_seed(0)
    weight = torch.randn(96, 128) * 0.02
    restored = nvfp4.dequantize(*nvfp4.quantize(weight))
    error = (restored - weight).pow(2).mean().sqrt() / weight.pow(2).mean().sqrt()
    assert error < 0.12  # FP4 E2M1 with per-16 scales: about 9 % RMS on Gaussian weights
    assert torch.equal(nvfp4.dequantize(*nvfp4.quantize(restored)), restored)  # representable values survive


def test_a_checkpoint_loads_its_nvfp4_layers_dequantized(tmp_path: Path):
    plain = build_tiny_transformer_file(tmp_path, "plain.safetensors", seed=4)
    fp4 = build_tiny_transformer_file(tmp_path, "fp4.safetensors", seed=4, storage="nvfp4")
    original = transformer_state(plain, torch.float32, "cpu")
    loaded = transformer_state(fp4, torch.float32, "cpu")
    assert set(loaded) == set(original)  # scale tensors are consumed, not passed on
    quantized = [k for k in original if ".transformer_blocks." in k and k.endswith(".weight") and original[k].ndim == 2]
    assert quantized
    for key in quantized:
        assert torch.equal(loaded[key], nvfp4.dequantize(*nvfp4.quantize(original[key])))
        assert not torch.equal(loaded[key], original[key])
    untouched = [k for k in original if k not in quantized]
    assert all(torch.equal(loaded[k], original[k]) for k in untouched)


@pytest.fixture(scope="module")
def fp4_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fp4-models")
    tiny.main(["ltx2-dev-fp4", str(root / "ltx2-dev-fp4"), "--seed", "6"])  # the documented entry point
    return root


def test_ltx2_dev_fp4_renders_on_the_cpu(project: Project, fp4_models: Path, monkeypatch):
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(fp4_models))
    project.write("""
        scenekit: 1
        defaults: {model: ltx2-dev-fp4, size: 256x256, fps: 24}
        clips: [{id: one, prompt: "a red ball", frames: 17, steps: 2, stg: 0}]
        output: {file: out.mp4, preset: ultrafast}
    """)
    graph = project.prepare().graph
    assert graph.node("one/stage1").params["precision"]["storage"] == "nvfp4"
    frames, _, _ = read_video(project.render().output)
    assert frames.shape == (17, 256, 256, 3) and frames.std() > 0


def test_plan_says_the_nvfp4_weights_are_dequantized(project: Project, fp4_models: Path, monkeypatch):
    from typer.testing import CliRunner

    from scenekit.cli import app

    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(fp4_models))
    project.write("""
        scenekit: 1
        clips: [{id: one, prompt: "a red ball", frames: 17, model: ltx2-dev-fp4, size: 256x256}]
    """)
    result = CliRunner().invoke(app, ["plan", str(project.spec), "--cache-dir", str(project.cache)])
    assert result.exit_code == 0, result.output
    assert "loads transformer ltx-2-19b-dev-fp4.safetensors nvfp4 dequantized to float8_e4m3fn at load" in result.output
