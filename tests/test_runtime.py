"""The model runtime: speed policies (what they resolve to, and that they key the nodes they change) and
memory policies (offloading changes no output value)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from scenekit.runtime import memory
from scenekit.runtime.pool import MODELS
from scenekit.runtime.speed import FP8_ROWWISE, Machine, Numerics, SpeedUnavailable, resolve_numerics
from scenekit.tiny import build_tiny_weights

from conftest import Project, read_video

CPU = Machine("cpu")
HOPPER = Machine("cuda", 9.0, has_torchao=True)
AMPERE = Machine("cuda", 8.0, has_torchao=True)


@pytest.mark.parametrize(
    ("speed", "storage", "machine", "expected"),
    [
        ("auto", "bfloat16", CPU, Numerics("bfloat16", compiled=False)),
        ("auto", "float8_e4m3fn", CPU, Numerics("bfloat16", compiled=False)),
        ("auto", "bfloat16", HOPPER, Numerics("bfloat16", compiled=True)),
        ("auto", "float8_e4m3fn", HOPPER, Numerics(FP8_ROWWISE, compiled=True)),
        ("auto", "float8_e4m3fn", AMPERE, Numerics("bfloat16", compiled=True)),
        ("auto", "float8_e4m3fn", Machine("cuda", 9.0, has_torchao=False), Numerics("bfloat16", compiled=True)),
        ("eager", "float8_e4m3fn", HOPPER, Numerics("bfloat16", compiled=False)),
        ("compiled", "bfloat16", AMPERE, Numerics("bfloat16", compiled=True)),
        ("fp8", "bfloat16", HOPPER, Numerics(FP8_ROWWISE, compiled=True)),
    ],
)
def test_speed_policies_resolve_by_machine_and_storage(speed, storage, machine, expected):
    assert resolve_numerics(speed, "bfloat16", storage, machine) == expected


@pytest.mark.parametrize(
    ("speed", "machine", "reason"),
    [
        ("compiled", CPU, "needs a GPU"),
        ("fp8", AMPERE, "compute capability 8"),
        ("fp8", Machine("cuda", 9.0, has_torchao=False), "torchao is not installed"),
        ("fastest", HOPPER, "unknown speed"),
    ],
)
def test_a_speed_this_machine_cannot_run_says_why(speed, machine, reason):
    with pytest.raises(SpeedUnavailable, match=reason):
        resolve_numerics(speed, "bfloat16", "bfloat16", machine)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_weights("ltx2-distilled", root / "ltx2-distilled", seed=1)
    return root


@pytest.fixture
def ltx(project: Project, models: Path, monkeypatch) -> Project:
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    project.write("""
        scenekit: 1
        defaults: {model: ltx2-distilled, size: 256x256, fps: 24, seed: 3}
        clips: [{id: shot, prompt: "A lighthouse", frames: 17}]
        output: {file: out.mp4, preset: ultrafast}
    """)
    return project


def test_the_speed_policy_keys_exactly_the_transformer_nodes(ltx: Project, monkeypatch):
    eager = ltx.prepare(speed="eager").graph
    monkeypatch.setattr("scenekit.backends.machine.this_machine", lambda device: HOPPER)
    compiled = ltx.prepare(speed="compiled").graph
    own_params_changed = {n.id for n in compiled.ordered() if n.params != eager.node(n.id).params}
    assert own_params_changed == {"shot/stage1", "shot/stage2"}
    keys_changed = {n.id for n in compiled.ordered() if n.key != eager.node(n.id).key}
    assert "shot/prompt" not in keys_changed and {"shot/stage1", "shot/decode", "stitch"} <= keys_changed
    assert compiled.node("shot/stage1").params["numerics"] == {"matmul": "bfloat16", "compiled": True}


def test_a_ray_render_is_compiled_for_the_clusters_gpus_not_for_the_machine_driving_it(ltx: Project, monkeypatch):
    from scenekit.errors import SpecError

    monkeypatch.delenv("SCENEKIT_DEVICE")  # the driver has no GPU
    with pytest.raises(SpecError, match="this machine has none"):
        ltx.prepare()
    cluster = Machine("cuda", 9.0, has_torchao=True, gpu_bytes=24 * 1024**3, name="the Ray cluster's GPUs (H100)")
    monkeypatch.setattr("scenekit.engine.session.executor_machine", lambda choice: cluster)
    graph = ltx.prepare(executor="ray").graph
    assert graph.node("shot/stage1").params["numerics"] == {"matmul": "bfloat16", "compiled": True}
    assert graph.node("shot/decode").params.get("tiled") is True  # a 24 GB GPU decodes in tiles
    monkeypatch.setattr(
        "scenekit.engine.session.executor_machine", lambda choice: replace(cluster, gpu_bytes=80 * 1024**3)
    )
    assert "tiled" not in ltx.prepare(executor="ray").graph.node("shot/decode").params
    monkeypatch.setattr(
        "scenekit.engine.session.executor_machine", lambda choice: Machine("cpu", name="the Ray cluster")
    )
    with pytest.raises(SpecError, match="the Ray cluster has none"):
        ltx.prepare(executor="ray")


def test_an_unavailable_speed_is_a_located_error(ltx: Project):
    from scenekit.errors import SpecError

    with pytest.raises(SpecError) as error:
        ltx.prepare(speed="fp8")
    issue = error.value.issues[0]
    assert "needs a GPU" in issue.message and issue.location is not None


def test_offloading_changes_no_output_value(ltx: Project, monkeypatch):
    """Offloaded with room for half of the transformer's blocks: half stream, half stay resident."""
    from scenekit.ltx2.pool import POOL

    POOL.clear()
    resident, _, _ = read_video(ltx.render(memory="resident").output)
    POOL.clear()
    monkeypatch.setattr(ltx, "cache", ltx.root / "cache-offloaded")
    half_fits = lambda count, block_bytes, room: real_resident_blocks(count, block_bytes, count // 2 * block_bytes)  # noqa: E731
    real_resident_blocks = memory.resident_blocks
    monkeypatch.setattr(memory, "resident_blocks", half_fits)
    offloaded, _, _ = read_video(ltx.render(memory="offload").output)
    transformers = MODELS.loaded("transformer")
    assert transformers
    for model in transformers:
        streamed = [_streams(block) for block in model.transformer_blocks]
        assert streamed.count(True) == len(streamed) - len(streamed) // 2 > 0
    POOL.clear()
    memory.use_memory_policy("auto")
    assert np.array_equal(resident, offloaded)


def _streams(block) -> bool:
    """Whether diffusers' group offloading moves `block`."""
    from diffusers.hooks import HookRegistry

    registry = getattr(block, "_diffusers_hook", None)
    return isinstance(registry, HookRegistry) and registry.get_hook("group_offloading") is not None


def test_resident_blocks_fill_the_room_spread_between_the_streamed_ones():
    assert memory.resident_blocks(6, 10, 5) == set() and memory.resident_blocks(6, 10, 99) == set(range(6))
    kept = memory.resident_blocks(48, 10, 210)
    assert len(kept) == 21
    runs = "".join("r" if i in kept else "s" for i in range(48)).split("r")
    assert max(len(run) for run in runs) <= 2  # every streamed block is copied while resident ones compute


def test_auto_offloads_only_what_does_not_fit():
    memory.use_memory_policy("auto")
    gb = 2**30
    assert memory.choose_placement("transformer", 38 * gb, None) == "resident"  # the CPU
    assert memory.choose_placement("transformer", 38 * gb, 100 * gb) == "resident"
    assert memory.choose_placement("transformer", 38 * gb, 30 * gb) == "offload"
    memory.use_memory_policy("offload")
    assert memory.choose_placement("transformer", 1 * gb, 100 * gb) == "offload"
    memory.use_memory_policy("auto")


def test_the_command_line_refuses_an_unknown_speed_or_memory_policy(ltx: Project):
    from typer.testing import CliRunner

    from scenekit.cli import app

    for option in ("--speed", "--memory"):
        result = CliRunner().invoke(app, ["render", str(ltx.spec), "--cache-dir", str(ltx.cache), option, "fastest"])
        assert result.exit_code == 2 and f"{option}: unknown value 'fastest'" in result.output, result.output


def test_the_model_cache_frees_large_models_of_every_family_with_what_came_with_them(monkeypatch):
    from scenekit.runtime.pool import ModelCache

    cache = ModelCache()
    cache.get(("ltx2", "transformer"), lambda: "t1", role="transformer", large=True, group="ckpt-1")
    cache.get(("ltx2", "connectors"), lambda: "c1", group="ckpt-1")
    cache.get(("other-family", "transformer"), lambda: "t2", role="transformer", large=True)
    cache.get(("vae",), lambda: "v")
    gb = 2**30
    monkeypatch.setattr("scenekit.runtime.memory.free_gpu_bytes", lambda device: 100 * gb)
    cache.make_room(40 * gb, "cuda")
    assert cache.loaded("transformer") == ["t1", "t2"]  # room enough: nothing freed
    monkeypatch.setattr("scenekit.runtime.memory.free_gpu_bytes", lambda device: 30 * gb)
    cache.make_room(40 * gb, "cuda", group="ckpt-1")  # another transformer of checkpoint 1
    assert cache.loaded("transformer") == [] and ("ltx2", "connectors") in cache and ("vae",) in cache
    cache.get(("ltx2", "transformer"), lambda: "t1", role="transformer", large=True, group="ckpt-1")
    cache.make_room(40 * gb, "cuda", group="ckpt-2")
    assert ("ltx2", "connectors") not in cache and ("vae",) in cache
    cache.release("component")
    assert ("vae",) not in cache


def test_releasing_text_encoders_keeps_the_streamed_ones_which_hold_no_gpu_memory():
    from scenekit.runtime.pool import ModelCache

    cache = ModelCache()
    streamed = torch.nn.Sequential(torch.nn.Linear(2, 2))
    memory.offload_blocks(streamed, "cpu")
    cache.get("streamed", lambda: streamed, role="text_encoder")
    cache.get("resident", lambda: torch.nn.Linear(2, 2), role="text_encoder")
    cache.release("text_encoder")
    assert "streamed" in cache and "resident" not in cache


def test_a_small_gpu_decodes_in_tiles_keyed_unless_resident(ltx: Project, monkeypatch):
    big = ltx.prepare(memory="auto").graph
    monkeypatch.setattr("scenekit.backends.machine.gpu_capacity_bytes", lambda device: 24 * 2**30)
    small = ltx.prepare(memory="auto").graph
    assert {n.id for n in small.ordered() if n.params != big.node(n.id).params} == {"shot/decode"}
    assert small.node("shot/decode").params["tiled"] is True and "tiled" not in big.node("shot/decode").params
    assert "tiled" not in ltx.prepare(memory="resident").graph.node("shot/decode").params


def test_tiles_decode_in_tiles_in_space_and_time_only_inside():
    from diffusers import AutoencoderKLLTX2Video, AutoencoderKLLTXVideo

    for real in (AutoencoderKLLTX2Video, AutoencoderKLLTXVideo):  # the VAEs `tiles` switches
        assert callable(real.enable_tiling) and callable(real.disable_tiling)

    class Vae:  # records what `tiles` switches
        use_tiling = use_framewise_decoding = False

        def enable_tiling(self):
            self.use_tiling = True

        def disable_tiling(self):
            self.use_tiling = False

    vae = Vae()
    with memory.tiles(vae, False):
        assert not vae.use_tiling
    with pytest.raises(RuntimeError), memory.tiles(vae, True):
        assert vae.use_tiling and vae.use_framewise_decoding
        raise RuntimeError("decode failed")
    assert not vae.use_tiling and not vae.use_framewise_decoding
