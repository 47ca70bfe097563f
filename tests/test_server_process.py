"""The render queue's workers in child processes (as `scenekit serve` runs them on several GPUs), on the CPU
with the `preview` model: two "devices", both `cpu`, forced into processes. One pair of children serves
every test of the module (starting a process costs its imports)."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from scenekit.engine.events import SilentEvents
from scenekit.engine.execute import Cancellation
from scenekit.engine.session import RenderOptions, prepare, render
from scenekit.server.app import ServerConfig, create_app
from scenekit.server.events import EventLog
from scenekit.server.process import RenderProcesses
from scenekit.server.queue import RenderQueue
from scenekit.server.store import Event, Store

from conftest import Project

SPEC = """\
scenekit: 1
name: {name}
defaults: {{size: {size}, fps: 24, seed: {seed}}}
clips:
  - {{id: a, prompt: "{name} first", frames: {frames}}}
  - {{id: b, prompt: "{name} second", frames: 8, transition: {{type: crossfade, duration: 2f}}}}
output: {{file: renders/{name}.mp4, preset: ultrafast}}
"""
LONG = {"size": "320x192", "frames": 240}  # about a second on one core: long enough to be stopped midway


@pytest.fixture(scope="module")
def children(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RenderProcesses]:
    with pytest.MonkeyPatch.context() as patch:  # the environment the children start with: no user config
        patch.setenv("SCENEKIT_CONFIG", str(tmp_path_factory.getbasetemp() / "no-user-config.yaml"))
        patch.delenv("SCENEKIT_CACHE_DIR", raising=False)
        pool = RenderProcesses(["cpu", "cpu"])
        pool.start()
        yield pool
        pids = [worker.pid for worker in pool.workers]
        pool.close()
    assert_ended(pids)


def assert_ended(pids: list[int | None]) -> None:
    """The processes ended and were reaped."""
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def write(project: Project, name: str, size: str = "96x64", frames: int = 8, seed: int = 1) -> Path:
    return project.write(SPEC.format(name=name, size=size, frames=frames, seed=seed), f"{name}.yaml")


def submit(queue: RenderQueue, spec_file: Path) -> str:
    prepared = prepare(spec_file, RenderOptions())
    render_id = secrets.token_hex(4)
    request = {
        "spec_file": spec_file.name,
        "options": {"model": None, "size": None, "vars": {}},
        "source": "renders",
        "cache": str(prepared.cache.root),
    }
    queue.submit(render_id, request, prepared)
    return render_id


def queue_of(project: Project, children: RenderProcesses) -> RenderQueue:
    return RenderQueue(project.root, EventLog(Store(project.root / "server.db")), children=children)


@contextmanager
def started(project: Project, children: RenderProcesses) -> Iterator[RenderQueue]:
    """A started queue of `children`, stopped after the block."""
    queue = queue_of(project, children)
    queue.start()
    try:
        yield queue
    finally:
        queue.stop()


def long_render_at(
    queue: RenderQueue, project: Project, children: RenderProcesses, event: str
) -> tuple[str, int, int | None]:
    """A long render submitted to the started `queue`, once it reached `event`: its id, worker and child's pid."""
    render_id = submit(queue, write(project, "long", **LONG))
    first_event(queue, render_id, event)
    worker = first_event(queue, render_id, "render_started").data["worker"]
    return render_id, worker, children[worker].pid


def ended(queue: RenderQueue, render_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        record = queue.store.get(render_id)
        assert record is not None
        if record["state"] not in ("queued", "running"):
            return record
        assert time.monotonic() < deadline, f"render {render_id} did not end"
        time.sleep(0.01)


def state(queue: RenderQueue, render_id: str) -> str:
    record = queue.store.get(render_id)
    assert record is not None
    return str(record["state"])


def first_event(queue: RenderQueue, render_id: str, kind: str) -> Event:
    deadline = time.monotonic() + 30
    while not (found := [e for e in queue.store.events(render_id) if e.type == kind]):
        assert time.monotonic() < deadline, f"render {render_id} sent no {kind}"
        time.sleep(0.005)
    return found[0]


def test_renders_run_side_by_side_in_two_children_and_make_the_same_videos_as_in_process(
    project: Project, children: RenderProcesses, tmp_path_factory: pytest.TempPathFactory
):
    specs = [write(project, "left", size="192x128", frames=64), write(project, "right", seed=2)]
    queue = queue_of(project, children)
    ids = [submit(queue, spec) for spec in specs]  # queued before the workers start: each takes one
    queue.start()
    try:
        records = [ended(queue, render_id) for render_id in ids]
    finally:
        queue.stop()
    assert [r["state"] for r in records] == ["done", "done"], [r["errors"] for r in records]
    events = [queue.store.events(render_id) for render_id in ids]
    assert {e.data["worker"] for found in events for e in found if e.type == "render_started"} == {0, 1}
    start = [next(e.time for e in found if e.type == "render_started") for found in events]
    end = [found[-1].time for found in events]
    assert start[0] < end[1] and start[1] < end[0], "the two renders did not overlap"
    for record, found in zip(records, events, strict=True):
        running = {node["id"] for node in record["plan"] if node["status"] == "run"}
        for kind in ("node_started", "node_done"):
            assert {e.data["node"] for e in found if e.type == kind} == running
        assert {e.data["node"] for e in found if e.type == "node_step"} >= {"a/generate", "b/generate"}
        assert all(node["status"] == "done" for node in record["nodes"].values())
    here = Project(tmp_path_factory.mktemp("in-process"))
    for spec in specs:
        written = here.write(spec.read_text(), spec.name)
        made = render(prepare(written, RenderOptions(cache_dir=here.cache)), SilentEvents()).output
        assert made.read_bytes() == (project.root / "renders" / made.name).read_bytes()


def test_the_childs_log_records_and_located_errors_reach_the_render(project: Project, children: RenderProcesses):
    spec, changed = write(project, "logged"), write(project, "changed")
    prepared = prepare(spec, RenderOptions())
    render(prepared, SilentEvents())
    stitch = prepared.graph.node(prepared.graph.target).key
    next(prepared.cache.entry_dir(stitch).glob("*.mp4")).write_bytes(b"not the video")  # found corrupt in the child
    queue = queue_of(project, children)
    logged, invalid = submit(queue, spec), submit(queue, changed)
    changed.write_text(changed.read_text().replace("prompt:", "promt:", 1))  # invalid by the time a child reads it
    queue.start()
    try:
        records = {render_id: ended(queue, render_id) for render_id in (logged, invalid)}
    finally:
        queue.stop()
    assert records[logged]["state"] == "done"
    logs = [e.data for e in queue.store.events(logged) if e.type == "log"]
    assert any(log["level"] == "warning" and "is corrupt" in log["message"] for log in logs), logs
    assert records[invalid]["state"] == "failed"
    [error] = records[invalid]["errors"]
    assert (error["file"], error["line"], error["field"]) == ("changed.yaml", 5, "clips[0].promt")
    assert [e.type for e in queue.store.events(invalid)][-1] == "render_failed"


def test_a_cancel_stops_the_childs_render_at_its_next_step_and_the_child_renders_on(
    project: Project, children: RenderProcesses
):
    with started(project, children) as queue:
        render_id, worker, pid = long_render_at(queue, project, children, "node_step")
        queue.cancel(render_id)
        record = ended(queue, render_id)
    assert record["state"] == "cancelled" and record["nodes"]["a/generate"]["status"] == "cancelled"
    assert "node_done" not in {e.type for e in queue.store.events(render_id)}  # stopped inside its first node
    result = children[worker].render(write(project, "next"), RenderOptions(), SilentEvents(), Cancellation())
    assert children[worker].pid == pid and result.output.is_file()  # the same process, its models kept


def test_a_killed_child_fails_its_render_clearly_and_starts_again_for_the_next(
    project: Project, children: RenderProcesses
):
    with started(project, children) as queue:
        render_id, worker, pid = long_render_at(queue, project, children, "node_started")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        record = ended(queue, render_id)
    assert record["state"] == "failed"
    [error] = record["errors"]
    assert error["node"] == "a/generate" and record["nodes"]["a/generate"]["status"] == "failed"
    assert f"(pid {pid}) was killed by SIGKILL" in error["message"] and "starts again" in error["message"]
    result = children[worker].render(write(project, "next"), RenderOptions(), SilentEvents(), Cancellation())
    assert children[worker].pid not in (None, pid) and result.output.is_file()


def test_a_server_stop_stops_the_childs_render_and_kills_a_child_that_will_not_stop(
    project: Project, children: RenderProcesses, monkeypatch: pytest.MonkeyPatch
):
    queue = queue_of(project, children)
    queue.start()
    render_id = submit(queue, write(project, "long", **LONG))
    first_event(queue, render_id, "node_step")
    pids = [worker.pid for worker in children.workers]
    queue.stop()
    assert state(queue, render_id) == "queued"  # resumes on the next start
    assert [worker.pid for worker in children.workers] == pids  # stopped at a step: nothing killed
    monkeypatch.setattr("scenekit.server.queue.STOP_SECONDS", 0.2)
    stuck = RenderProcesses(["cpu"], init=functools.partial(time.sleep, 60))  # never gets to its renders
    stuck.start()
    pid = stuck[0].pid
    queue = RenderQueue(project.root, EventLog(Store(project.root / "stuck.db")), children=stuck)
    queue.start()
    render_id = submit(queue, write(project, "next"))
    first_event(queue, render_id, "render_started")
    started = time.monotonic()
    queue.stop()
    assert time.monotonic() - started < 5
    assert state(queue, render_id) == "queued"
    assert stuck[0].pid is None
    assert_ended([pid])


def test_serve_runs_workers_in_processes_on_several_gpus_or_when_asked_and_ends_them(
    project: Project, caplog: pytest.LogCaptureFixture
):
    def config(devices: list[str], **options: Any) -> ServerConfig:
        return ServerConfig(project=project.root, token=None, devices=devices, **options)

    assert config(["cuda:0", "cuda:1"]).in_processes()
    assert not config(["cuda:0"]).in_processes() and not config(["cpu", "cpu"]).in_processes()
    assert not config(["cuda:0", "cuda:1"], processes=False).in_processes()
    assert not config(["cuda:0", "cuda:1"], executor="ray").in_processes()
    served = config(["cpu", "cpu"], processes=True)
    caplog.set_level(logging.INFO, "scenekit.server.process")
    with TestClient(create_app(served)) as client:
        render_id = client.post("/renders", json={"path": write(project, "served").name}).json()["id"]
        deadline = time.monotonic() + 30
        while (record := client.get(f"/renders/{render_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with client.stream("GET", f"/renders/{render_id}/events") as response:
            kinds = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
    assert record["state"] == "done" and kinds[-1] == "render_done"
    assert {"node_started", "node_step", "node_done"} <= set(kinds)
    pids = [int(r.getMessage().rsplit(" ", 1)[1]) for r in caplog.records if ": process " in r.getMessage()]
    assert len(pids) == 2 and os.getpid() not in pids
    assert_ended(pids)  # the server's stop ended its children
