"""The FastAPI app: renders (queue, records, events, video), specs built for one clip or a stitch, uploads,
and the page at `/`."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from scenekit.engine.session import RenderOptions, cache_store, check, prepare, render
from scenekit.errors import RenderError, SpecError
from scenekit.fsutil import atomic_write_text
from scenekit.hardware import local_devices
from scenekit.server.auth import TokenMiddleware
from scenekit.server.builders import generate_spec, stitch_spec, to_yaml
from scenekit.server.events import TERMINAL, EventLog
from scenekit.server.limits import BodyLimitMiddleware, Limits
from scenekit.server.process import RenderProcesses
from scenekit.server.queue import RenderQueue, Runner, render_options
from scenekit.server.schemas import ERROR_ANSWERS, GenerateRequest, Options, SpecRequest, StitchRequest
from scenekit.server.specs import (
    OutsideProject,
    ensure_project,
    issue_json,
    project_file,
    request_issue,
    scratch_spec,
    write_text_spec,
)
from scenekit.server.store import Store
from scenekit.server.uploads import UploadRejected, store_upload
from scenekit.stitch import SEGMENT_FILE, STITCH, VIDEO_FILE
from scenekit.units import parse_size
from scenekit.userconfig import user_settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DATABASE = Path(".scenekit") / "server.db"
KEEPALIVE_SECONDS = 15.0
STORE_POLL_SECONDS = 0.5
UPLOAD_BODY = {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in ("image/png", "image/jpeg", "image/webp", "video/mp4", "video/quicktime", "video/webm")
}


@dataclass
class ServerConfig:
    """What `scenekit serve` was asked for."""

    project: Path
    token: str | None
    """None: no authentication (only on a loopback host; the command line checks)."""
    limits: Limits = field(default_factory=Limits)
    cors_origins: list[str] = field(default_factory=list)
    runner: Runner = render
    """How a prepared render runs (the engine's `render`, which runs the executor its options name)."""
    executor: str | None = None
    """`local` or `ray` (`--executor`); None: the user config's `executor.name`, else local."""
    address: str | None = None
    """The Ray cluster to join (`--address`); None: the user config's, else a local Ray instance."""
    devices: list[str] | None = None
    """The devices the local executor renders on side by side, one worker each; None: `local_devices()`."""
    processes: bool | None = None
    """Whether each device's worker renders in a child process of its own (`scenekit.server.process`); None:
    when there are several GPUs (one device renders in this process, without a process's start and transfers)."""
    worker_init: Callable[[], None] | None = None
    """Run first in each render process (it must pickle; e.g. a benchmark's stand-in weights)."""

    def render_base(self) -> RenderOptions:
        """The options every render starts from: the executor, and the cluster it joins."""
        return RenderOptions(executor=self.executor, address=self.address)

    def workers(self) -> list[str | None]:
        """One worker per device for the local executor; one, bound to no device, that feeds the Ray cluster."""
        if (self.executor or user_settings().executor.name) == "ray":
            return [None]
        return list(self.devices if self.devices is not None else local_devices())

    def in_processes(self) -> bool:
        """Whether the workers render in child processes: `processes`, else when they are on several GPUs
        (never for the Ray executor's one worker)."""
        devices = self.workers()
        if None in devices:
            return False
        several_gpus = len(devices) > 1 and all(str(device).startswith("cuda") for device in devices)
        return several_gpus if self.processes is None else self.processes


class InvalidRequest(Exception):
    """A request whose spec or options are invalid: 422 with located problems."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(f"{len(errors)} problem(s)")
        self.errors = errors


def create_app(config: ServerConfig) -> FastAPI:
    """The app serving `config.project`; its render worker starts and stops with the app."""
    project = ensure_project(config.project)
    store = Store(project / DATABASE)
    events = EventLog(store)
    render_base = config.render_base()
    workers = config.workers()
    children = (
        RenderProcesses([str(device) for device in workers], config.runner, config.worker_init)
        if config.in_processes()
        else None
    )
    queue = RenderQueue(project, events, config.runner, workers, render_base, children)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if children is not None:
            children.start()
        queue.start()
        try:
            yield
        finally:
            await run_in_threadpool(queue.stop)
            if children is not None:
                await run_in_threadpool(children.close)

    app = FastAPI(
        title="scenekit",
        summary="Render scene specs through the cache; watch them as they run.",
        docs_url=None,  # the interactive docs load scripts from a CDN; the page and /openapi.json work offline
        redoc_url=None,
        lifespan=lifespan,
        responses=ERROR_ANSWERS,
    )
    if config.token is not None:
        app.add_middleware(TokenMiddleware, token=config.token)
    if config.cors_origins:  # outside the token check: a browser's preflight request carries no token
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Range"],
        )
    app.add_middleware(BodyLimitMiddleware, limits=config.limits)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(InvalidRequest)
    async def invalid(_: Request, exc: InvalidRequest) -> JSONResponse:
        return JSONResponse({"detail": "invalid spec or options", "errors": exc.errors}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            request_issue(".".join(str(p) for p in error["loc"][1:]) or "body", error["msg"]) for error in exc.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    def record_of(render_id: str) -> dict[str, Any]:
        record = store.get(render_id)
        if record is None:
            raise HTTPException(404, f"no render {render_id!r}")
        return record

    def file_of(written: str) -> Path:
        try:
            return project_file(project, written)
        except OutsideProject:
            raise HTTPException(404, f"no file {written!r} in the project") from None

    def new_file(written: str) -> Path:
        """A path to write a new spec at: inside the project, a .yaml name, not an existing file."""
        if "\0" in written or Path(written).is_absolute():
            raise HTTPException(404, f"{written!r} is not a path in the project")
        try:
            target = (project / written).resolve()
            inside = target.is_relative_to(project)
            taken = target.exists()
        except OSError:  # a name the filesystem refuses (too long, ...)
            raise InvalidRequest([request_issue("save_as", "is not a file name this filesystem accepts")]) from None
        if not inside:
            raise HTTPException(404, f"{written!r} is not a path in the project")
        if target.suffix not in (".yaml", ".yml") or taken:
            raise InvalidRequest([request_issue("save_as", "must name a new .yaml file in the project")])
        return target

    def options_of(request: Options) -> dict[str, Any]:
        size = None
        if request.size is not None:
            try:
                size = list(parse_size(request.size))
            except ValueError as exc:
                raise InvalidRequest([request_issue("size", str(exc), "write WIDTHxHEIGHT, e.g. 384x256")]) from None
        return {"model": request.model, "size": size, "vars": request.vars}

    @contextmanager
    def spec_errors() -> Iterator[None]:
        try:
            yield
        except SpecError as exc:
            raise InvalidRequest([issue_json(issue, project) for issue in exc.issues]) from None

    def queue_spec(spec_file: Path, options: dict[str, Any], source: str) -> dict[str, Any]:
        """Prepare (validate and plan) a spec file of the project and queue it."""
        with spec_errors():
            try:
                prepared = prepare(spec_file, render_options(options, render_base))
            except RenderError as exc:  # the executor cannot take renders now (a Ray cluster that cannot be joined)
                raise HTTPException(503, str(exc)) from None
        render_id = secrets.token_hex(8)
        request = {
            "spec_file": spec_file.relative_to(project).as_posix(),
            "options": options,
            "source": source,
            "cache": str(prepared.cache.root),  # where its segments are (the engine's choice for this spec)
        }
        plan = queue.submit(render_id, request, prepared)
        return {"id": render_id, "state": "queued", "spec_file": request["spec_file"], "plan": plan}

    def spec_file_of(request: SpecRequest) -> Path:
        if (request.spec is None) == (request.path is None):
            raise InvalidRequest([request_issue("spec", "send either `spec` (YAML text) or `path`, not both")])
        if request.path is not None:
            return file_of(request.path)
        assert request.spec is not None
        return write_text_spec(project, request.spec)

    def save_built(spec: dict[str, Any], save_as: str | None) -> tuple[Path, str]:
        text = to_yaml(spec)
        if save_as is None:
            return write_text_spec(project, text), text
        target = new_file(save_as)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)
        return target, text

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.post("/validate")
    def validate(request: SpecRequest) -> dict[str, Any]:
        """Check a spec (as the page's spec box does while you type): its located errors, or none."""
        options = options_of(request)
        try:
            if request.spec is not None and request.path is None:
                with scratch_spec(project, request.spec) as path:
                    check(path, render_options(options, render_base))
            else:
                check(spec_file_of(request), render_options(options, render_base))
        except SpecError as exc:
            return {"valid": False, "errors": [issue_json(issue, project) for issue in exc.issues]}
        return {"valid": True, "errors": []}

    @app.post("/renders", status_code=201)
    def create_render(request: SpecRequest) -> dict[str, Any]:
        """Validate a spec, then queue it; the render's id and plan (422 with located errors if invalid)."""
        options = options_of(request)
        return queue_spec(spec_file_of(request), options, "renders")

    @app.get("/renders")
    def list_renders() -> list[dict[str, Any]]:
        keys = ("id", "state", "created", "started", "finished", "output")
        return [
            {**{k: r[k] for k in keys}, "spec_file": r["request"]["spec_file"], "source": r["request"]["source"]}
            for r in store.recent()
        ]

    @app.get("/renders/{render_id}")
    def get_render(render_id: str) -> dict[str, Any]:
        """State, plan, per-node status and timings, errors and (when done) the manifest."""
        record = record_of(render_id)
        request = record.pop("request")
        return {**record, **{k: request[k] for k in ("spec_file", "options", "source")}}

    @app.get("/renders/{render_id}/spec")
    def get_render_spec(render_id: str) -> dict[str, Any]:
        written = record_of(render_id)["request"]["spec_file"]
        return {"path": written, "text": file_of(written).read_text(errors="replace")}

    @app.delete("/renders/{render_id}", status_code=202)
    def cancel_render(render_id: str) -> dict[str, Any]:
        record_of(render_id)
        queue.cancel(render_id)
        return {"id": render_id, "state": record_of(render_id)["state"]}

    def cached_file(record: dict[str, Any], key: str, name: str, what: str) -> FileResponse:
        """File `name` of the cache entry `key` the render used (its own, whatever renders came after)."""
        cache = cache_store(project, Path(record["request"]["cache"]))
        path = cache.entry_dir(key) / name
        if not cache.has(key) or not path.is_file() or path.is_symlink():
            raise HTTPException(404, f"{what} is not in the cache (pruned?): render the spec again")
        return FileResponse(path, media_type="video/mp4")

    @app.get("/renders/{render_id}/video")
    def get_video(render_id: str) -> FileResponse:
        """The video this render made (HTTP range requests let a browser seek): its stitch's cache entry, which
        a later render of the spec does not replace, as it does the output file."""
        record = record_of(render_id)
        key = next((n["key"] for n in record["plan"] if n["op"] == STITCH), None)
        if record["state"] != "done" or key is None:
            raise HTTPException(404, f"render {render_id} has no video ({record['state']})")
        return cached_file(record, key, VIDEO_FILE, f"the video of render {render_id}")

    @app.get("/renders/{render_id}/segments/{clip}")
    def get_segment(render_id: str, clip: str) -> FileResponse:
        """One clip's H.264 segment of the output, from the cache."""
        record = record_of(render_id)
        key = next((n["key"] for n in record["plan"] if n["id"] == f"{clip}/segment"), None)
        if key is None:
            raise HTTPException(404, f"render {render_id} has no segment for clip {clip!r}")
        return cached_file(record, key, SEGMENT_FILE, f"the segment of clip {clip!r}")

    @app.get("/renders/{render_id}/events")
    async def get_events(render_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events in order: queued, render_started, planned, node_started, node_step, node_done, log,
        then render_done, render_failed or render_cancelled (the stream ends there). `Last-Event-ID` resumes."""
        await run_in_threadpool(record_of, render_id)
        header = request.headers.get("last-event-id", "0")
        seen = int(header) if header.isdigit() else 0
        return StreamingResponse(_stream(events, render_id, seen), media_type="text/event-stream")

    @app.post("/uploads", status_code=201, openapi_extra={"requestBody": {"required": True, "content": UPLOAD_BODY}})
    async def upload(request: Request) -> dict[str, Any]:
        """A conditioning image or video (the raw file as the body), kept under assets/uploads/ by content hash."""
        try:
            stored = await store_upload(project, request.stream(), config.limits)
        except UploadRejected as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return {"path": stored.path, "sha256": stored.sha256, "size": stored.size, "kind": stored.kind}

    @app.post("/generate", status_code=201)
    def generate(request: GenerateRequest) -> dict[str, Any]:
        """One clip: builds a spec (returned; `save_as` keeps it), then queues it like any render."""
        base = new_file(request.save_as).parent if request.save_as else project
        image = file_of(request.image) if request.image else None
        name = request.name or f"generate-{secrets.token_hex(4)}"
        spec = generate_spec(
            name=name,
            prompt=request.prompt,
            duration=request.duration,
            base=base,
            project=project,
            model=request.model,
            size=request.size,
            fps=request.fps,
            seed=request.seed,
            image=image,
        )
        spec_file, text = save_built(spec, request.save_as)
        return {**queue_spec(spec_file, {"model": None, "size": None, "vars": {}}, "generate"), "spec": text}

    @app.post("/stitch", status_code=201)
    def stitch(request: StitchRequest) -> dict[str, Any]:
        """Earlier renders' clips in order, with `transition` between renders: builds a spec and queues it."""
        timelines = []
        for render_id in request.renders:
            record = record_of(render_id)
            with spec_errors():
                checked = check(
                    file_of(record["request"]["spec_file"]), render_options(record["request"]["options"], render_base)
                )
            timelines.append(checked.timeline)
        base = new_file(request.save_as).parent if request.save_as else project
        spec = stitch_spec(
            name=request.name or f"stitch-{secrets.token_hex(4)}",
            timelines=timelines,
            transition=request.transition,
            transition_duration=request.transition_duration,
            base=base,
            project=project,
        )
        spec_file, text = save_built(spec, request.save_as)
        return {**queue_spec(spec_file, {"model": None, "size": None, "vars": {}}, "stitch"), "spec": text}

    return app


async def _stream(events: EventLog, render_id: str, seen: int) -> AsyncIterator[str]:
    """A render's events from after `seen`, as SSE, until its terminal event."""
    with events.listening() as woken:
        while True:
            woken.clear()  # before looking: an event emitted from here on wakes the wait below
            found = events.after(render_id, seen)
            ours = found is not None
            if found is None:  # not run by this process (yet): its events are in the store
                found = await run_in_threadpool(events.store.events, render_id, seen)
            for event in found:
                seen = event.seq
                data = json.dumps({**event.data, "seq": event.seq, "time": event.time})
                yield f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"
                if event.type in TERMINAL:
                    return
            if not found:
                try:
                    await asyncio.wait_for(woken.wait(), KEEPALIVE_SECONDS if ours else STORE_POLL_SECONDS)
                except TimeoutError:
                    if ours:
                        yield ": keep-alive\n\n"
