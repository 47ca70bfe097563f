"""The whole path for one spec: load, resolve, compile, plan, render. The CLI, watch mode and
later the HTTP API all go through here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scenekit.backends import UnknownBackend, get_backend
from scenekit.cache import CacheStore
from scenekit.engine.events import RenderEvents
from scenekit.engine.execute import Cancellation, ExecutorChoice, executor_machine, make_executor
from scenekit.engine.manifest import build_manifest, read_previous_nodes
from scenekit.engine.plan import PlannedNode, make_plan
from scenekit.errors import SpecIssue
from scenekit.fsutil import atomic_copy, atomic_write_text
from scenekit.graph.compile import RenderGraph, compile_timeline
from scenekit.output_file import manifest_path
from scenekit.profiles import available_profiles
from scenekit.runtime.memory import use_memory_policy
from scenekit.runtime.parallel import use_gpus_per_clip
from scenekit.runtime.speed import any_machine, use_compile_cache
from scenekit.spec.loader import LoadedSpec, load_spec
from scenekit.spec.paths import PathPolicy, find_project_root
from scenekit.stitch import VIDEO_FILE
from scenekit.timeline import Timeline, resolve_timeline
from scenekit.userconfig import user_settings

CACHE_DIR_ENV = "SCENEKIT_CACHE_DIR"


@dataclass
class RenderOptions:
    """Choices made on the command line rather than in the spec."""

    model: str | None = None
    size: tuple[int, int] | None = None
    """Renders every clip at this width and height (e.g. a quick look at a lower size)."""
    cache_dir: Path | None = None
    allow_outside: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None
    """Writes the video (and its manifest) here instead of the spec's `output.file`."""
    output_variant: str | None = None
    """Writes `NAME.VARIANT.mp4` beside the output instead (e.g. `preview` renders in watch mode)."""
    speed: str | None = None
    """The speed policy for every model (`scenekit.runtime.speed`); None: the user config's, else each profile's."""
    memory: str | None = None
    """The memory policy (`scenekit.runtime.memory`); None: the user config's, else `auto`."""
    executor: str | None = None
    """What runs the nodes: `local` or `ray` (`scenekit.engine.execute.EXECUTORS`); None: the user config's."""
    address: str | None = None
    """The Ray cluster to join with the `ray` executor; None: the user config's, else a local Ray instance."""
    gpus_per_clip: int | None = None
    """GPUs each sampling stage of a clip runs across (`scenekit.runtime.parallel`); None: one."""

    @property
    def output_tags(self) -> list[str]:
        """What sets this render apart from the spec's own: `output_variant`, else the `--model` and `--size`
        overrides unless `--output` names the file (`NAME.preview.384x256.mp4`)."""
        if self.output_variant:
            return [self.output_variant]
        if self.output is not None:
            return []
        size = f"{self.size[0]}x{self.size[1]}" if self.size else None
        return [tag for tag in (self.model, size) if tag]

    def output_file(self, written: Path) -> Path:
        """Where the video goes: `--output` or the spec's `written` file, tagged with `output_tags`, so a
        lower-fidelity render never replaces the real one."""
        base = self.output.resolve() if self.output is not None else written
        return base.with_name(".".join([base.stem, *self.output_tags]) + base.suffix)


@dataclass
class Prepared:
    """A spec compiled into its render graph, with the cache it renders into."""

    loaded: LoadedSpec
    timeline: Timeline
    graph: RenderGraph
    cache: CacheStore
    root: Path
    executor: ExecutorChoice = field(default_factory=ExecutorChoice)

    @property
    def asset_files(self) -> list[Path]:
        return sorted({a.path for n in self.graph.ordered() for a in n.files.values()})

    def plan(self) -> list[PlannedNode]:
        return make_plan(self.graph, self.cache, read_previous_nodes(self.timeline.output_file))


@dataclass
class RenderResult:
    """What a finished render produced and did."""

    output: Path
    manifest: Path
    seconds: dict[str, float]
    """Seconds of every node that ran."""

    @property
    def ran(self) -> list[str]:
        return list(self.seconds)


def cache_store(project: Path, cache_dir: Path | None = None) -> CacheStore:
    """The cache the specs of `project` render into: `cache_dir` if given, else `default_cache_dir`.

    One store per folder and process, so what it verified stays verified across the re-prepares of
    `scenekit watch` (an entry's files are hashed once, not on every save).
    """
    root = (cache_dir or default_cache_dir(project)).resolve()
    return _STORES.setdefault(root, CacheStore(root))


_STORES: dict[Path, CacheStore] = {}


def default_cache_dir(project: Path) -> Path:
    """`$SCENEKIT_CACHE_DIR`, else `.scenekit/cache` in the project folder."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else project.resolve() / ".scenekit" / "cache"


def folder_project(folder: Path) -> Path:
    """The project folder of a spec in `folder` (see `find_project_root`)."""
    return find_project_root(folder / "scene.yaml")


@dataclass
class Checked:
    """A valid spec resolved into its timeline (not yet compiled: no weights or GPU needed)."""

    loaded: LoadedSpec
    timeline: Timeline
    root: Path
    memory: str = "auto"
    """The memory policy the render runs under (`--memory`, else the user config's, else auto)."""
    executor: ExecutorChoice = field(default_factory=ExecutorChoice)
    """What runs the nodes (`--executor`/`--address`, else the user config's, else local)."""

    def machine_problems(self) -> list[SpecIssue]:
        """What keeps this machine from rendering the spec (hardware, missing weights), located at each clip's model.
        With the Ray executor the hardware is the cluster's, checked when a render joins it (`prepare`): only
        the weights are checked here."""
        timeline = self.timeline
        if self.executor.name == "ray" and timeline.machine is None:
            timeline = replace(timeline, machine=any_machine("the Ray cluster"))
        problems = []
        for clip in timeline.clips:
            try:
                problem = get_backend(clip.profile.backend).machine_problem(clip, timeline)
            except UnknownBackend as exc:
                problem = f"model `{clip.profile.name}`: {exc}"
            issue = clip.model_issue(problem) if problem else None
            if issue is not None and issue not in problems:  # clips sharing `defaults.model` share the note
                problems.append(issue)
        return problems


def check(spec_file: Path, options: RenderOptions) -> Checked:
    """Load, validate and resolve a spec; raises SpecError when it is invalid."""
    policy = PathPolicy(find_project_root(spec_file), options.allow_outside)
    loaded = load_spec(spec_file, policy, options.variables)
    timeline = resolve_timeline(loaded, policy, available_profiles(), options.model, options.size, options.output_file)
    settings = user_settings()
    timeline.models.append(settings.models)
    timeline.speed = options.speed or settings.runtime.speed
    timeline.memory = options.memory or settings.runtime.memory or "auto"
    timeline.gpus_per_clip = options.gpus_per_clip or 1
    name = options.executor or settings.executor.name
    gpus_per_worker = timeline.gpus_per_clip if name == "ray" else 1
    executor = ExecutorChoice(name, options.address or settings.executor.address, gpus_per_worker)
    return Checked(loaded, timeline, policy.root, timeline.memory, executor)


def prepare(spec_file: Path, options: RenderOptions) -> Prepared:
    """Check a spec and compile it for this machine; raises SpecError when it is invalid or cannot run here."""
    checked = check(spec_file, options)
    checked.timeline.machine = executor_machine(checked.executor)
    cache = cache_store(checked.root, options.cache_dir)
    use_compile_cache(cache.root / "compiled")
    use_memory_policy(checked.memory)
    use_gpus_per_clip(checked.timeline.gpus_per_clip)
    return Prepared(
        checked.loaded, checked.timeline, compile_timeline(checked.timeline), cache, checked.root, checked.executor
    )


def render(prepared: Prepared, events: RenderEvents, cancellation: Cancellation | None = None) -> RenderResult:
    """Run what is not cached, then write the output video and its manifest (both atomically)."""
    prepared.cache.clean_stale()
    plan = prepared.plan()
    events.planned(plan)
    try:
        gpu_gb = {clip.id: clip.profile.requires.vram_gb for clip in prepared.timeline.clips}
        executor = make_executor(prepared.executor, prepared.graph, prepared.cache, events, cancellation, gpu_gb)
        execution = executor.run(sum(1 for p in plan if p.status == "run"))
    finally:
        events.closed()
    timeline = prepared.timeline
    atomic_copy(execution.output / VIDEO_FILE, timeline.output_file)
    manifest = build_manifest(
        root=prepared.root,
        loaded=prepared.loaded,
        asset_files=prepared.asset_files,
        timeline=timeline,
        render_graph=prepared.graph,
        plan=plan,
        seconds=execution.seconds,
        placements=execution.placements,
        output_sha256=prepared.cache.recorded_sha256(prepared.graph.node(prepared.graph.target).key, VIDEO_FILE),
    )
    atomic_write_text(manifest_path(timeline.output_file), json.dumps(manifest, indent=2))
    return RenderResult(timeline.output_file, manifest_path(timeline.output_file), execution.seconds)
