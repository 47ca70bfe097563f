"""The HTTP API on the `preview` model, through FastAPI's test client."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from scenekit.engine.events import RenderEvents
from scenekit.engine.execute import Cancellation, ExecutorChoice
from scenekit.engine.session import Prepared, RenderResult, render
from scenekit.errors import RenderError
from scenekit.hardware import compute_device
from scenekit.runtime.pool import MODELS
from scenekit.server.app import ServerConfig, create_app
from scenekit.server.limits import Limits
from scenekit.server.store import Store

from conftest import Project

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCENE = """\
scenekit: 1
name: tiny
defaults: {size: 96x64, fps: 8}
clips:
  - {id: a, prompt: "first", frames: 4}
  - {id: b, prompt: "second", frames: 4, transition: {type: crossfade, duration: 2f}}
output: {file: renders/tiny.mp4, preset: ultrafast}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("SCENEKIT_CACHE_DIR", raising=False)
    (tmp_path / "project").mkdir()
    return Project(tmp_path / "project")


def serve(project: Project, **config: object) -> TestClient:
    return TestClient(create_app(ServerConfig(project=project.root, token=TOKEN, **config)))  # type: ignore[arg-type]


def events_of(client: TestClient, render_id: str) -> list[tuple[str, dict]]:
    """Every SSE event of a render, read until its terminal event ends the stream (after waiting, with a
    deadline, for the render to end, so that a broken queue fails the test instead of hanging it)."""
    deadline = time.monotonic() + 30
    while client.get(f"/renders/{render_id}", headers=AUTH).json()["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"render {render_id} did not end"
        time.sleep(0.02)
    found = []
    with client.stream("GET", f"/renders/{render_id}/events", headers=AUTH) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((kind, json.loads(line.removeprefix("data: "))))
    return found


def first(events: list[tuple[str, dict]], kind: str, node: str) -> int:
    return next(i for i, (k, data) in enumerate(events) if k == kind and data["node"] == node)


class Gate:
    """A runner that holds each render until released (or cancelled), then renders it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, prepared: Prepared, events: RenderEvents, cancellation: Cancellation) -> RenderResult:
        self.started.set()
        target = prepared.graph.node(prepared.graph.target)
        deadline = time.monotonic() + 30
        while not self.release.wait(0.01):
            cancellation.check_before(target)  # raises once the render is cancelled
            assert time.monotonic() < deadline, "the render was never cancelled"
        return render(prepared, events, cancellation)


def test_a_render_end_to_end_with_events_in_order_and_a_seekable_video(project: Project):
    with serve(project) as client:
        created = client.post("/renders", json={"spec": SCENE}, headers=AUTH)
        assert created.status_code == 201, created.text
        body = created.json()
        plan = body["plan"]
        assert {n["status"] for n in plan} == {"run"} and plan[-1]["op"] == "stitch"
        events = events_of(client, body["id"])
        kinds = [kind for kind, _ in events]
        assert kinds[:3] == ["queued", "render_started", "planned"] and kinds[-1] == "render_done"
        assert [data["seq"] for _, data in events] == list(range(1, len(events) + 1))
        for node in plan:
            assert first(events, "node_started", node["id"]) < first(events, "node_done", node["id"])
        record = client.get(f"/renders/{body['id']}", headers=AUTH).json()
        assert record["state"] == "done" and record["output"] == "renders/tiny.mp4"
        assert all(n["status"] == "done" and n["seconds"] > 0 for n in record["nodes"].values())
        assert [n["key"] for n in record["manifest"]["nodes"]] == [n["key"] for n in plan]
        whole = client.get(f"/renders/{body['id']}/video", headers=AUTH)
        assert whole.status_code == 200 and whole.content[4:8] == b"ftyp"
        assert whole.content == (project.root / "renders/tiny.mp4").read_bytes()
        part = client.get(f"/renders/{body['id']}/video", headers={**AUTH, "Range": "bytes=10-29"})
        assert part.status_code == 206 and part.content == whole.content[10:30]
        assert part.headers["content-range"] == f"bytes 10-29/{len(whole.content)}"
        segment = client.get(f"/renders/{body['id']}/segments/b", headers=AUTH)
        assert segment.status_code == 200 and segment.content[4:8] == b"ftyp"
        again = client.post("/renders", json={"spec": SCENE}, headers=AUTH).json()
        assert {n["status"] for n in again["plan"]} == {"cached"}
        assert [r["id"] for r in client.get("/renders", headers=AUTH).json()] == [again["id"], body["id"]]


def test_a_renders_video_stays_the_one_it_made_when_a_later_render_overwrites_the_file(project: Project):
    with serve(project) as client:
        before = client.post("/renders", json={"spec": SCENE}, headers=AUTH).json()["id"]
        assert [k for k, _ in events_of(client, before)][-1] == "render_done"
        made = (project.root / "renders/tiny.mp4").read_bytes()
        after = client.post("/renders", json={"spec": SCENE.replace("second", "third")}, headers=AUTH).json()["id"]
        assert [k for k, _ in events_of(client, after)][-1] == "render_done"
        overwritten = (project.root / "renders/tiny.mp4").read_bytes()
        assert overwritten != made
        assert client.get(f"/renders/{before}/video", headers=AUTH).content == made
        assert client.get(f"/renders/{after}/video", headers=AUTH).content == overwritten


def test_one_worker_per_device_renders_side_by_side_each_with_its_own_models(project: Project):
    loads: list[tuple[str, str]] = []
    model = object()  # a key of this test's own
    side_by_side = threading.Barrier(2, timeout=10)  # the first two renders wait here for each other
    arrived = []

    def runner(prepared: Prepared, events: RenderEvents, cancellation: Cancellation) -> RenderResult:
        MODELS.get(model, lambda: loads.append((threading.current_thread().name, compute_device())))
        arrived.append(1)
        if len(arrived) <= 2:
            side_by_side.wait()
        return render(prepared, events, cancellation)

    specs = [SCENE, SCENE.replace("first", "other").replace("tiny.mp4", "other.mp4")] * 2
    with serve(project, runner=runner, devices=["cpu", "cpu"]) as client:
        ids = [client.post("/renders", json={"spec": spec}, headers=AUTH).json()["id"] for spec in specs]
        assert [[k for k, _ in events_of(client, i)][-1] for i in ids] == ["render_done"] * 4
    assert sorted(loads) == [("scenekit-render-0", "cpu"), ("scenekit-render-1", "cpu")]  # once per worker
    assert model not in MODELS  # this thread's models (the default slot) are not the workers'


def test_workers_find_their_own_models_but_load_one_at_a_time():
    """Loading changes process-wide state (torch's default dtype, accelerate's patched `nn.Module`): two
    workers' loads never overlap."""
    key, loading, overlapped, found = object(), [], [], {}
    both = threading.Barrier(2, timeout=5)

    def load() -> str:
        loading.append(1)
        overlapped.append(len(loading) > 1)
        time.sleep(0.05)
        loading.pop()
        return threading.current_thread().name

    def worker(slot: int) -> None:
        with MODELS.bound(slot):
            both.wait()
            found[slot] = MODELS.get(key, load)

    threads = [threading.Thread(target=worker, args=(slot,), name=f"w{slot}") for slot in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlapped == [False, False] and found == {"a": "wa", "b": "wb"}  # each slot its own model


def test_serve_with_the_ray_executor_runs_every_render_through_it_from_one_worker(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from typer.testing import CliRunner

    from scenekit.cli import app

    served: list[ServerConfig] = []
    monkeypatch.setattr("scenekit.server.serve.create_app", served.append)
    monkeypatch.setattr("scenekit.server.serve.uvicorn.run", lambda *a, **k: None)
    address = "ray://head:10001"
    result = CliRunner().invoke(app, ["serve", str(project.root), "--no-auth", "--address", address])
    assert result.exit_code == 0, result.output
    assert (served[0].executor, served[0].address, served[0].workers()) == ("ray", address, [None])

    seen: list[ExecutorChoice] = []
    monkeypatch.setattr("scenekit.engine.session.executor_machine", lambda choice: None)  # joins no cluster

    def runner(prepared: Prepared, events: RenderEvents, cancellation: Cancellation) -> RenderResult:
        seen.append(prepared.executor)
        raise RuntimeError("not run here")

    with serve(project, runner=runner, executor="ray", address=address) as client:
        render_id = client.post("/renders", json={"spec": SCENE}, headers=AUTH).json()["id"]
        assert [k for k, _ in events_of(client, render_id)][-1] == "render_failed"
    assert seen == [ExecutorChoice("ray", address)]

    def unreachable(choice: ExecutorChoice) -> None:
        raise RenderError(f"could not start or join the Ray cluster at {choice.address}: timed out")

    monkeypatch.setattr("scenekit.engine.session.executor_machine", unreachable)
    with serve(project, runner=runner, executor="ray", address=address) as client:
        answer = client.post("/renders", json={"spec": SCENE}, headers=AUTH)
        assert answer.status_code == 503 and address in answer.json()["detail"]

    config = tmp_path / "config" / "config.yaml"
    config.parent.mkdir()
    config.write_text("executor: {name: ray}\n")
    monkeypatch.setenv("SCENEKIT_CONFIG", str(config))
    assert ServerConfig(project=project.root, token=None, devices=["cpu", "cpu"]).workers() == [None]


def test_an_invalid_spec_is_422_with_located_errors(project: Project):
    broken = SCENE.replace('prompt: "second"', 'promt: "second"')
    with serve(project) as client:
        answer = client.post("/renders", json={"spec": broken}, headers=AUTH)
        assert answer.status_code == 422
        (error,) = answer.json()["errors"]
        assert error["file"] == "<spec>" and (error["line"], error["column"]) == (6, 13)
        assert error["field"] == "clips[1].promt" and "promt" in error["message"] and "prompt" in error["hint"]
        checked = client.post("/validate", json={"spec": broken}, headers=AUTH).json()
        assert checked == {"valid": False, "errors": [error]}
        assert client.post("/validate", json={"spec": SCENE}, headers=AUTH).json() == {"valid": True, "errors": []}
        size = client.post("/renders", json={"spec": SCENE, "size": "big"}, headers=AUTH)
        assert size.status_code == 422 and size.json()["errors"][0]["field"] == "size"
        assert client.get("/renders", headers=AUTH).json() == []
    assert not list(project.root.glob(".scenekit-spec-check-*"))


def test_every_endpoint_but_health_openapi_and_the_page_needs_the_token(project: Project):
    with serve(project) as client:
        for method, path in (
            ("GET", "/renders"),
            ("POST", "/renders"),
            ("GET", "/renders/x/video"),
            ("POST", "/uploads"),
        ):
            assert client.request(method, path).status_code == 401
            assert client.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/health").json() == {"status": "ok"}
        assert "/renders" in client.get("/openapi.json").json()["paths"]
        assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
        client.cookies.set("scenekit_token", TOKEN)  # what the page sets, for the <video> element's requests
        assert client.get("/renders").status_code == 200


def test_paths_outside_the_project_are_refused(project: Project, tmp_path: Path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(SCENE)
    (project.root / "link.yaml").symlink_to(outside)
    (tmp_path / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with serve(project) as client:
        for written in ("../outside.yaml", str(outside), "link.yaml", "nothing.yaml", "~/x.yaml"):
            answer = client.post("/renders", json={"path": written}, headers=AUTH)
            assert answer.status_code == 404, written
        reaching = SCENE.replace('prompt: "first",', 'prompt: "first", conditioning: [{image: ../secret.png}],')
        answer = client.post("/renders", json={"spec": reaching}, headers=AUTH)
        assert answer.status_code == 422 and "outside the project" in answer.json()["errors"][0]["message"]
        escaping = client.post("/generate", json={"prompt": "x", "image": "../secret.png"}, headers=AUTH)
        assert escaping.status_code == 404
        saving = client.post("/generate", json={"prompt": "x", "save_as": "../x.yaml"}, headers=AUTH)
        assert saving.status_code == 404 and not (tmp_path / "x.yaml").exists()


def test_cancel_a_running_render_and_a_queued_one(project: Project):
    gate = Gate()
    with serve(project, runner=gate) as client:
        running = client.post("/renders", json={"spec": SCENE}, headers=AUTH).json()["id"]
        queued = client.post("/renders", json={"spec": SCENE.replace("first", "other")}, headers=AUTH).json()["id"]
        assert gate.started.wait(5)
        assert client.delete(f"/renders/{queued}", headers=AUTH).json() == {"id": queued, "state": "cancelled"}
        assert client.delete(f"/renders/{running}", headers=AUTH).status_code == 202
        assert [k for k, _ in events_of(client, running)][-1] == "render_cancelled"
        assert [k for k, _ in events_of(client, queued)] == ["queued", "render_cancelled"]
        assert client.get(f"/renders/{running}", headers=AUTH).json()["state"] == "cancelled"
        assert client.get(f"/renders/{running}/video", headers=AUTH).status_code == 404


def test_the_queue_and_records_survive_a_restart(project: Project):
    gate = Gate()
    with serve(project, runner=gate) as client:
        running = client.post("/renders", json={"spec": SCENE}, headers=AUTH).json()["id"]
        queued = client.post("/renders", json={"spec": SCENE.replace("first", "other")}, headers=AUTH).json()["id"]
        assert gate.started.wait(5)
    Store(project.root / ".scenekit/server.db").update(running, state="running")  # as a server killed with -9 leaves it
    with serve(project) as client:  # a new server on the same project: both render, in their order
        assert [k for k, _ in events_of(client, running)][-1] == "render_done"
        assert [k for k, _ in events_of(client, queued)][-1] == "render_done"
        records = {r["id"]: r for r in client.get("/renders", headers=AUTH).json()}
        assert records[running]["started"] < records[queued]["started"]
        assert {r["state"] for r in records.values()} == {"done"}


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_uploads_by_content_hash_with_type_and_size_limits_then_generate_and_stitch(project: Project):
    image = png((200, 40, 40))
    with serve(project, limits=Limits(request=4096, image=len(image), video=len(image))) as client:
        stored = client.post("/uploads", content=image, headers=AUTH)
        assert stored.status_code == 201
        path = f"assets/uploads/{hashlib.sha256(image).hexdigest()}.png"
        assert stored.json()["path"] == path and (project.root / path).read_bytes() == image
        assert client.post("/uploads", content=image, headers=AUTH).json()["path"] == path
        assert client.post("/uploads", content=b"#!/bin/sh\nrm -rf /\n", headers=AUTH).status_code == 415
        assert client.post("/uploads", content=image + b"x", headers=AUTH).status_code == 413
        assert client.post("/renders", json={"spec": SCENE + "#" * 5000}, headers=AUTH).status_code == 413
        assert sorted(p.name for p in (project.root / "assets/uploads").iterdir()) == [Path(path).name]

        clip = {"prompt": "a red card", "duration": "4f", "size": "96x64", "fps": "8", "image": path, "name": "card"}
        generated = client.post("/generate", json=clip, headers=AUTH)
        assert generated.status_code == 201, generated.text
        assert path in generated.json()["spec"]
        tiny = client.post("/renders", json={"spec": SCENE}, headers=AUTH).json()["id"]
        for render_id in (generated.json()["id"], tiny):
            assert [k for k, _ in events_of(client, render_id)][-1] == "render_done"
        stitched = client.post(
            "/stitch",
            json={"renders": [tiny, generated.json()["id"]], "transition": "crossfade", "transition_duration": "1f"},
            headers=AUTH,
        )
        assert stitched.status_code == 201, stitched.text
        frames = [n["status"] for n in stitched.json()["plan"] if n["op"] == "preview.generate"]
        assert frames == ["cached"] * 3  # the clips' frames come from the cache; segments and the stitch run
        assert [k for k, _ in events_of(client, stitched.json()["id"])][-1] == "render_done"


def test_cors_is_off_unless_configured(project: Project):
    preflight = {"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"}
    with serve(project) as client:
        answer = client.get("/health", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in answer.headers
    with serve(project, cors_origins=["http://elsewhere.example"]) as client:
        answer = client.options("/renders", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "http://elsewhere.example"


def test_serve_makes_a_token_once_and_refuses_no_auth_off_loopback(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from typer.testing import CliRunner

    from scenekit.cli import app
    from scenekit.server.auth import resolve_token, token_file

    monkeypatch.setenv("SCENEKIT_CONFIG", str(tmp_path / "config" / "config.yaml"))
    monkeypatch.delenv("SCENEKIT_API_TOKEN", raising=False)
    made, created = resolve_token(None)
    assert created and token_file().read_text().strip() == made and token_file().stat().st_mode & 0o077 == 0
    assert resolve_token(None) == (made, False)
    monkeypatch.setenv("SCENEKIT_API_TOKEN", "from-env")
    assert resolve_token(None) == ("from-env", False) and resolve_token("given") == ("given", False)
    monkeypatch.setattr("scenekit.server.serve.uvicorn.run", lambda *a, **k: pytest.fail("the server started"))
    refused = CliRunner().invoke(app, ["serve", str(project.root), "--host", "0.0.0.0", "--no-auth"])
    assert refused.exit_code == 2 and "loopback" in refused.output
