"""The Ray executor on a local Ray with three fake GPUs (CPU only): the same bytes and keys as the local
executor, model affinity, an actor killed mid-render, two renders sharing one cache, cancellation, a worker of
two GPUs running a clip across both."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from scenekit.engine.events import SilentEvents  # noqa: E402
from scenekit.engine.execute import Cancellation  # noqa: E402
from scenekit.engine.ray_executor import WorkerPool, worker_pool  # noqa: E402
from scenekit.engine.session import RenderOptions, prepare, render  # noqa: E402
from scenekit.errors import RenderCancelled  # noqa: E402
from scenekit.graph.nodes import Node  # noqa: E402
from scenekit.ltx2.tiny import build_tiny_profile_weights  # noqa: E402
from scenekit.runtime.parallel import close_groups, use_gpus_per_clip  # noqa: E402

from conftest import Project  # noqa: E402

ACTORS = 3

# two chains and two independent clips, two profiles: tiny LTX-2 (a1 -> a2) and preview (b1 -> b2, c, d); a2 says
# the same prompt as a1 (one prompt entry: one text encoder load, the other actor waits for its lock)
SIX_CLIPS = """
    scenekit: 1
    defaults: {model: preview, size: 256x256, fps: 24, seed: 5}
    clips:
      - {id: a1, model: ltx2-distilled, prompt: "a lighthouse", frames: 9}
      - {id: b1, prompt: "the sea", frames: 9}
      - {id: a2, model: ltx2-distilled, continue: a1, overlap: 9, prompt: "a lighthouse", frames: 8}
      - {id: b2, continue: b1, overlap: 9, prompt: "a storm", frames: 8}
      - {id: c, prompt: "gulls", frames: 9}
      - {id: d, prompt: "the beam", frames: 9}
    output: {file: out.mp4, preset: ultrafast}
"""

pytestmark = pytest.mark.cluster  # a local Ray: about 35 s of two cores, run apart (`pytest -m cluster`; CI does)

PREVIEW = """
    scenekit: 1
    defaults: {model: preview, size: 96x64, fps: 12, seed: 3}
    clips:
      - {id: one, prompt: "one", frames: 12}
      - {id: two, continue: one, overlap: 9, prompt: "two", frames: 12}
      - {id: three, prompt: "three", frames: 12}
    output: {file: out.mp4, preset: ultrafast}
"""


@pytest.fixture(scope="session")
def pool() -> Any:
    """One local Ray for the session: 3 fake GPUs (one actor each), a small CPU count, no dashboard."""
    ray.init(num_cpus=2, num_gpus=ACTORS, include_dashboard=False, log_to_driver=False, namespace="scenekit-tests")
    try:
        yield worker_pool(env={"SCENEKIT_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    finally:
        ray.shutdown()


def _ray_render(project: Project, **options: Any) -> Any:
    return render(project.prepare(executor="ray", **options), SilentEvents())


def _entries(cache: Path) -> dict[str, dict[str, str]]:
    """Every entry's key -> its files' sha256 (an FFV1 file's name only: Matroska writes a random segment id,
    so two local renders' frame files differ too; the frames in them are checked through the output)."""
    found = {}
    for entry in (cache / "objects").glob("*/*/entry.json"):
        record = json.loads(entry.read_text())
        files = record["files"].items()
        found[record["key"]] = {name: "" if name.endswith(".mkv") else f["sha256"] for name, f in files}
    return found


def _ran_on(manifest: Path) -> dict[str, dict[str, Any]]:
    return {n["id"]: n["ran_on"] for n in json.loads(manifest.read_text())["nodes"] if n["ran_on"]}


@pytest.fixture(scope="module")
def six_clips(tmp_path_factory, pool: WorkerPool) -> dict[str, Any]:
    """The six-clip scene rendered by the local executor and by Ray, with the models Ray's workers loaded."""
    root = tmp_path_factory.mktemp("six")
    build_tiny_profile_weights(root / "models" / "ltx2-distilled", seed=1, profile="ltx2-distilled")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCENEKIT_CONFIG", str(root / "no-config.yaml"))
        patch.setenv("SCENEKIT_DEVICE", "cpu")
        patch.setenv("SCENEKIT_MODELS", str(root / "models"))
        (root / "local").mkdir()
        (root / "ray").mkdir()
        local, remote = Project(root / "local"), Project(root / "ray")
        for project in (local, remote):
            project.write(SIX_CLIPS)
        before = pool.loads()
        result = {"local": local.render(), "ray": _ray_render(remote)}
        result["loads"] = [
            {role: n - was.get(role, 0) for role, n in now.items()}
            for now, was in zip(pool.loads(), before, strict=True)
        ]
        result["caches"] = (local.cache, remote.cache)
        return result


def test_six_clips_through_three_actors_equal_the_local_render_bytes_and_keys(six_clips: dict[str, Any]):
    local, remote = six_clips["local"], six_clips["ray"]
    assert remote.output.read_bytes() == local.output.read_bytes()
    assert _entries(six_clips["caches"][1]) == _entries(six_clips["caches"][0])  # same keys, same file bytes
    keys = {n["id"]: n["key"] for n in json.loads(local.manifest.read_text())["nodes"]}
    assert {keys[n] for n in remote.ran} == {keys[n] for n in local.ran}  # a1 and a2 share a prompt: either makes it
    placed = _ran_on(remote.manifest)
    assert set(placed) == set(remote.ran)
    assert {p["worker"] for n, p in placed.items() if n.endswith("/segment") or n == "stitch"} <= {
        p["worker"] for p in placed.values() if p["worker"].startswith("cpu")
    }  # CPU work ran as CPU tasks
    assert {p["worker"] for n, p in placed.items() if "/stage" in n or "/generate" in n} <= {"gpu-0", "gpu-1", "gpu-2"}
    assert all(p["executor"] == "ray" and p["attempts"] == 1 for p in placed.values())
    assert {p["executor"] for p in _ran_on(local.manifest).values()} == {"local"}


def test_affinity_keeps_the_ltx2_chain_on_the_actor_that_loaded_its_transformer(six_clips: dict[str, Any]):
    placed = _ran_on(six_clips["ray"].manifest)
    steps = ("stage1", "upsample", "stage2", "decode")
    workers = {placed[f"{clip}/{step}"]["worker"] for clip in ("a1", "a2") for step in steps}
    assert len(workers) == 1, workers  # the chain's model nodes all ran where the transformer was loaded
    transformer_loads = [loads.get("transformer", 0) for loads in six_clips["loads"]]
    assert sorted(transformer_loads) == [0, 0, 1]  # loaded once, on one of the three actors
    assert sum(loads.get("text_encoder", 0) for loads in six_clips["loads"]) == 1


def test_killing_an_actor_mid_render_retries_its_node_elsewhere_with_the_same_output(
    project: Project, pool: WorkerPool
):
    project.write(PREVIEW)
    local = project.render(output=project.root / "local.mp4")
    killed: dict[str, Any] = {}

    class Killer(SilentEvents):
        def node_placed(self, node: Node, where: str) -> None:
            """Kill the worker the node was just given to, before it gets the node (a preview node takes a few
            ms: killed while it runs, it would often finish first), and wait until it is dead."""
            if not killed and node.id == "one/generate":
                worker = next(w for w in pool.workers if w.where == where)
                killed.update(node=node.id, worker=worker.name)
                ray.kill(pool.actors[worker.index], no_restart=True)
                _wait_until_dead(pool.actors[worker.index])

    prepared = prepare(project.spec, RenderOptions(cache_dir=project.root / "ray-cache", executor="ray"))
    result = render(prepared, Killer())
    assert killed == {"node": "one/generate", "worker": killed["worker"]}
    assert result.output.read_bytes() == local.output.read_bytes()
    placed = _ran_on(result.manifest)["one/generate"]
    assert placed["attempts"] == 2 and placed["worker"] != killed["worker"]
    assert [w.name for w in pool.workers if not w.alive] == [killed["worker"]]  # dead for good: no more nodes


def _wait_until_dead(actor: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get(actor.describe.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError("the killed actor still answers")


def test_two_concurrent_renders_share_the_cache_without_computing_a_node_twice(project: Project, pool: WorkerPool):
    project.write(PREVIEW)
    both_planned = threading.Barrier(2, timeout=30)

    class Together(SilentEvents):
        def planned(self, plan: list) -> None:
            assert all(p.status == "run" for p in plan)
            both_planned.wait()  # neither starts before both planned every node as `run`

    results: dict[str, Any] = {}

    def run(name: str) -> None:
        options = RenderOptions(cache_dir=project.cache, executor="ray", output=project.root / f"{name}.mp4")
        try:
            results[name] = render(prepare(project.spec, options), Together())
        except Exception as exc:  # shown by the assertion below
            results[name] = exc

    threads = [threading.Thread(target=run, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    x, y = results["x"], results["y"]
    assert not isinstance(x, Exception) and not isinstance(y, Exception), results
    assert not set(x.ran) & set(y.ran)
    assert set(x.ran) | set(y.ran) == {n.id for n in project.prepare().graph.ordered()}
    assert x.output.read_bytes() == y.output.read_bytes()


def _empty_or_absent(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def test_cancelling_stops_the_remote_work_and_the_next_render_resumes(project: Project, pool: WorkerPool):
    project.write(PREVIEW)
    cancellation = Cancellation()
    started: list[str] = []

    class CancelOnFirstStart(SilentEvents):
        def node_placed(self, node: Node, where: str) -> None:
            started.append(node.id)
            cancellation.cancel()

    prepared = project.prepare(executor="ray")
    with pytest.raises(RenderCancelled):
        render(prepared, CancelOnFirstStart(), cancellation)
    assert all(w.busy == 0 for w in pool.workers)
    # "locks" and "tmp" exist once a node got far enough to take a lock or a work folder
    assert _empty_or_absent(project.cache / "locks")  # every remote node released its key's lock
    assert _empty_or_absent(project.cache / "tmp")  # and its work folder
    assert started[0] in project.planned_runs()  # stopped in the node: nothing of it was kept
    _ray_render(project)
    assert not project.planned_runs()


ONE_LTX2_CLIP = """
    scenekit: 1
    defaults: {model: ltx2-distilled, size: 256x256, fps: 24, seed: 5}
    clips: [{id: arrival, prompt: "A lighthouse on a cliff", frames: 17}]
    output: {file: out.mp4, preset: ultrafast}
"""


def test_a_worker_of_two_gpus_runs_a_clip_across_both(tmp_path: Path, pool: WorkerPool, monkeypatch):
    """Runs last: it regroups the session's pool (3 fake GPUs: one worker of 2, its stages on 2 gloo ranks)."""
    build_tiny_profile_weights(tmp_path / "models" / "ltx2-distilled", seed=1, profile="ltx2-distilled")
    monkeypatch.setenv("SCENEKIT_CONFIG", str(tmp_path / "no-config.yaml"))
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(tmp_path / "models"))
    latents = {}
    for executor in ("local", "ray"):
        (tmp_path / executor).mkdir()
        project = Project(tmp_path / executor)
        project.write(ONE_LTX2_CLIP)
        result = render(project.prepare(executor=executor, gpus_per_clip=2), SilentEvents())
        key = project.prepare().graph.node("arrival/stage2").key
        latents[executor] = load_file(project.cache / "objects" / key[:2] / key / "latents.safetensors")["video"]
    close_groups()
    use_gpus_per_clip(1)
    placed = _ran_on(result.manifest)
    assert len(placed["arrival/stage2"]["gpus"]) == 2 and len(worker_pool(gpus_per_worker=2).workers) == 1
    assert torch.equal(latents["ray"], latents["local"])  # the same two-rank computation as a local render's
