"""The Ray executor's pieces that need no Ray: routing, host-aware stale work and locks, options and config."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scenekit.cache import CacheStore
from scenekit.cache.locks import HOST, KeyLock
from scenekit.cache.prune import FOREIGN_STALE_SECONDS, is_stale_work
from scenekit.cli import app
from scenekit.engine.execute import ExecutorChoice
from scenekit.engine.ray_routing import GB, WorkerState, assign, compile_target, fits_nowhere
from scenekit.graph.nodes import Node
from scenekit.runtime.speed import Machine

from conftest import Project

TRANSFORMER = "transformer ltx-2-19b-distilled.safetensors bfloat16 in /models/LTX-2"


def _node(node_id: str, model: str | None = TRANSFORMER, inputs: dict[str, str] | None = None) -> Node:
    return Node(
        node_id, "ltx2.sample", {}, inputs or {}, clip=node_id.split("/")[0], meta={"model": model} if model else {}
    )


def _workers(*gpu_gb: float | None) -> list[WorkerState]:
    return [
        WorkerState(i, f"gpu-{i}", "h", [str(i)], None if gb is None else int(gb * GB)) for i, gb in enumerate(gpu_gb)
    ]


def _assigned(ready: list[Node], workers: list[WorkerState], need: float = 0.0, excluded=None) -> dict[str, str]:
    chosen = assign(ready, workers, {n.id: need for n in ready}, excluded or {}, {})
    return {node.id: worker.name for node, worker in chosen}


def test_a_node_goes_to_the_idle_worker_that_holds_its_model_else_to_the_least_loaded():
    workers = _workers(None, None, None)
    workers[2].models.add(TRANSFORMER)
    workers[0].models.add("text encoder in /models/LTX-2")
    assert _assigned([_node("a/stage1")], workers) == {"a/stage1": "gpu-2"}
    workers[2].busy = 1  # the holder is busy: an idle worker loads it, the one holding fewest models
    assert _assigned([_node("a/stage1"), _node("b/stage1")], workers) == {"a/stage1": "gpu-1", "b/stage1": "gpu-0"}


def test_a_node_goes_where_its_inputs_are_held_in_memory():
    workers = _workers(None, None)
    workers[1].held.add("k" * 64)
    chosen = assign([_node("a/decode", model=None)], workers, {}, {}, {"a/decode": ["k" * 64]})
    assert [w.name for _, w in chosen] == ["gpu-1"]


def test_a_worker_holding_the_text_encoder_encodes_the_waiting_prompts_before_it_samples():
    encoder = "text encoder in /models/LTX-2"
    workers = _workers(None)
    workers[0].models |= {encoder, TRANSFORMER}  # the transformer too, from an earlier render
    workers[0].last_model = encoder
    workers[0].held.add("e" * 64)  # the embeddings of a0, which a0/stage1 reads
    ready = [_node("a0/stage1"), _node("a1/prompt", model=encoder)]
    chosen = assign(ready, workers, {}, {}, {"a0/stage1": ["e" * 64]})
    assert [(n.id, w.name) for n, w in chosen] == [("a1/prompt", "gpu-0")]


def test_a_profile_that_does_not_fit_a_gpu_is_never_sent_there():
    workers = _workers(24, 80)
    workers[1].busy = 1
    assert _assigned([_node("a/stage1")], workers, need=40) == {}  # waits for the 80 GB GPU
    workers[1].busy = 0
    assert _assigned([_node("a/stage1")], workers, need=40) == {"a/stage1": "gpu-1"}
    problem = fits_nowhere(_node("a/stage1"), _workers(24, 24), 40)
    assert problem is not None and "a/stage1" in problem and "40 GB" in problem and "24.0 GB" in problem
    assert fits_nowhere(_node("a/stage1"), _workers(24, None), 40) is None  # unknown memory: taken to fit


def test_a_node_whose_worker_died_goes_to_another():
    workers = _workers(None, None)
    workers[0].models.add(TRANSFORMER)
    assert _assigned([_node("a/stage1")], workers, excluded={"a/stage1": {0}}) == {"a/stage1": "gpu-1"}
    workers[1].busy = 1  # the other one is busy: the node waits for it rather than go back where it died
    assert _assigned([_node("a/stage1")], workers, excluded={"a/stage1": {0}}) == {}
    workers[1].alive = False  # no other worker is left: the restarted one may try it again
    assert _assigned([_node("a/stage1")], workers, excluded={"a/stage1": {0}}) == {"a/stage1": "gpu-0"}


def test_a_render_is_compiled_for_the_weakest_gpu_of_the_cluster():
    h200 = Machine("cuda", 9.0, has_torchao=True, gpu_bytes=141 * GB, name="NVIDIA H200")
    a100 = Machine("cuda", 8.0, has_torchao=True, gpu_bytes=40 * GB, name="NVIDIA A100")
    assert compile_target([h200, h200]) == Machine(
        "cuda", 9.0, True, 141 * GB, name="the Ray cluster's GPUs (NVIDIA H200)"
    )
    mixed = compile_target([h200, a100, h200])
    assert (mixed.capability, mixed.gpu_bytes, mixed.fp8_compute) == (8.0, 40 * GB, False)
    assert not compile_target([h200, Machine("cuda", 9.0, has_torchao=False, gpu_bytes=141 * GB)]).fp8_compute
    assert compile_target([h200, None]).device == "cpu" and compile_target([None]).device == "cpu"


def test_stale_work_of_another_host_is_left_alone_until_it_is_a_day_old(tmp_path: Path):
    assert not is_stale_work("k.other-host.1.ab12cd34", 60.0)
    assert is_stale_work("k.other-host.1.ab12cd34", FOREIGN_STALE_SECONDS + 1)
    assert not is_stale_work(f"k.{HOST}.{os.getpid()}.ab12cd34", FOREIGN_STALE_SECONDS + 1)  # alive here
    assert not is_stale_work(f"k.{os.getpid()}.ab12cd34", 0.0)  # the name earlier versions wrote
    assert is_stale_work("not-a-work-folder", 0.0)
    store = CacheStore(tmp_path / "cache")
    tmp = tmp_path / "cache" / "tmp"
    tmp.mkdir(parents=True)
    foreign, dead = tmp / "k.other-host.4242.ab12cd34", tmp / f"k.{HOST}.999999999.ab12cd34"
    foreign.mkdir()
    dead.mkdir()
    assert store.clean_stale() == 1
    assert foreign.is_dir() and not dead.exists()
    old = time.time() - FOREIGN_STALE_SECONDS - 60
    os.utime(foreign, (old, old))
    assert store.clean_stale() == 1 and not foreign.exists()


def test_lock_files_nobody_holds_are_cleaned_up_and_held_ones_kept(tmp_path: Path):
    store = CacheStore(tmp_path / "cache")
    locks = tmp_path / "cache" / "locks"
    locks.mkdir(parents=True)
    (locks / f"{'a' * 64}.lock").write_text(f"{HOST} 999999999\n")  # its holder was killed after committing
    held = KeyLock(locks / f"{'b' * 64}.lock")
    assert held.try_acquire()
    assert store.clean_stale() == 1
    assert [p.name for p in locks.iterdir()] == [f"{'b' * 64}.lock"]
    held.release()


def test_a_lock_names_its_host_and_process(tmp_path: Path):
    lock = KeyLock(tmp_path / "k.lock")
    assert lock.try_acquire()
    assert KeyLock(tmp_path / "k.lock").holder() == f"{HOST} {os.getpid()}"
    lock.release()
    assert KeyLock(tmp_path / "k.lock").holder() == "?"


def test_executor_options_and_the_user_config(project: Project, monkeypatch, tmp_path: Path):
    project.write("scenekit: 1\nclips: [{id: a, prompt: x, frames: 8, model: preview}]\n")
    runner = CliRunner()
    result = runner.invoke(app, ["render", str(project.spec), "--executor", "dask"])
    assert result.exit_code == 2 and "--executor: unknown value 'dask'; use one of local, ray" in result.output
    result = runner.invoke(app, ["render", str(project.spec), "--executor", "local", "--address", "ray://head:10001"])
    assert result.exit_code == 2 and "use --executor ray" in result.output
    assert project.prepare().executor == ExecutorChoice("local", None)
    config = tmp_path / "config.yaml"
    monkeypatch.setenv("SCENEKIT_CONFIG", str(config))
    monkeypatch.setattr("scenekit.engine.session.executor_machine", lambda choice: None)  # joins no cluster
    config.write_text("executor: {name: ray, address: 'ray://head:10001'}\n")
    assert project.prepare().executor == ExecutorChoice("ray", "ray://head:10001")
    assert project.prepare(executor="local", address=None).executor.name == "local"
    config.write_text("executor: {name: dask}\n")
    result = runner.invoke(app, ["render", str(project.spec), "--cache-dir", str(project.cache)])
    assert result.exit_code == 2 and f"{config}:1:" in result.output and "executor.name" in result.output


def test_validate_with_the_ray_executor_checks_the_weights_not_the_gpu_of_this_machine(
    project: Project, monkeypatch, tmp_path: Path
):
    project.write("scenekit: 1\nclips: [{id: a, prompt: x, frames: 9, model: ltx2-distilled}]\n")
    monkeypatch.delenv("SCENEKIT_DEVICE", raising=False)  # no GPU here
    monkeypatch.setenv("SCENEKIT_MODELS", str(tmp_path / "no-models"))
    config = tmp_path / "config.yaml"
    monkeypatch.setenv("SCENEKIT_CONFIG", str(config))
    config.write_text("executor: {name: local}\n")
    local = CliRunner().invoke(app, ["validate", str(project.spec)])
    assert local.exit_code == 0 and "needs a GPU" in local.output
    config.write_text("executor: {name: ray}\n")  # the GPUs are the cluster's, checked when a render joins it
    remote = CliRunner().invoke(app, ["validate", str(project.spec)])
    assert remote.exit_code == 0 and "needs a GPU" not in remote.output
    assert "no weights for model profile `ltx2-distilled`" in remote.output


def test_a_cluster_address_nothing_answers_at_is_an_error_at_once(project: Project):
    pytest.importorskip("ray")
    project.write("scenekit: 1\nclips: [{id: a, prompt: x, frames: 8, model: preview}]\n")
    started = time.monotonic()
    result = CliRunner().invoke(app, ["render", str(project.spec), "--address", "127.0.0.1:1"])  # Ray would retry
    assert result.exit_code == 2 and "--address: could not reach the Ray cluster at 127.0.0.1:1" in result.output
    assert time.monotonic() - started < 30
