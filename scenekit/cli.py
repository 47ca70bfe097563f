"""The `scenekit` command line."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, overload

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table
from typer.core import TyperArgument, TyperCommand, TyperGroup

from scenekit import __version__
from scenekit.cache import CacheStore
from scenekit.engine.execute import EXECUTORS
from scenekit.engine.session import (
    Prepared,
    RenderOptions,
    cache_store,
    check,
    folder_project,
    prepare,
    render,
)
from scenekit.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID_SPEC,
    ExecutorUnavailable,
    RenderCancelled,
    RenderError,
    SpecError,
)
from scenekit.graph.export import to_dot, to_mermaid
from scenekit.logs import configure_logging
from scenekit.output_file import manifest_path
from scenekit.progress import RichProgress
from scenekit.runtime.memory import MEMORIES
from scenekit.runtime.speed import SPEEDS
from scenekit.spec.paths import find_project_root
from scenekit.spec.yaml_source import parse_value
from scenekit.units import parse_size
from scenekit.userconfig import config_path

if TYPE_CHECKING:
    from scenekit.profiles import ModelProfile
    from scenekit.userconfig import ModelsMapping
    from scenekit.weights import ProfileWeights


if TYPE_CHECKING:  # the mixin is checked against the command it is mixed into; at runtime it is a plain class
    _Base = TyperCommand
else:
    _Base = object


class _PlainHelp(_Base):
    """Help that writes arguments as `SPEC` and flags bare, rather than typer's `{spec}` and `--all <bool>`."""

    def get_params(self, ctx: Any) -> list[Any]:  # click's Context and Parameters (typer vendors click)
        params = super().get_params(ctx)
        for param in params:
            if param.metavar is None:
                param.metavar = "" if getattr(param, "is_flag", False) else (param.name or "").upper()
        return params


class _Group(_PlainHelp, TyperGroup):
    """A command group with plain help."""


class _Command(_PlainHelp, TyperCommand):
    """A command with plain help: `Usage: scenekit render [OPTIONS] SPEC`."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                metavar = param.metavar or ""  # set by get_params
                pieces.append(metavar if param.required else f"[{metavar}]")
        return pieces


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
cache_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Inspect and prune the node cache.")
app.add_typer(cache_app, name="cache")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

SpecArg = Annotated[Path, typer.Argument(help="The scene spec (YAML).", show_default=False)]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME",
        help="Use this model profile for every clip (writes NAME.MODEL.mp4 beside the output).",
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        metavar="DIR",
        help="Cache folder (default: .scenekit/cache in the project folder, or $SCENEKIT_CACHE_DIR).",
    ),
]
OutsideOpt = Annotated[
    bool, typer.Option("--allow-outside", help="Let the spec read and write files outside its project folder.")
]
VarOpt = Annotated[
    list[str] | None, typer.Option("--var", metavar="NAME=VALUE", help="Set a template variable (VALUE is YAML).")
]
SizeOpt = Annotated[
    str | None,
    typer.Option(
        "--size",
        metavar="WxH",
        help="Render every clip at this size, e.g. a quick look at 384x256 (writes NAME.384x256.mp4 beside the output).",
    ),
]
SpeedOpt = Annotated[
    str | None,
    typer.Option(
        "--speed",
        metavar="|".join(SPEEDS),
        help="How the models run: auto (default), eager (bit-exact with diffusers), "
        "compiled (torch.compile), fp8 (fp8 compute, Ada/Hopper). Default: the user config's runtime.speed, else the profile's.",
    ),
]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory",
        metavar="|".join(MEMORIES),
        help="What stays on the GPU: auto (default), resident, offload "
        "(stream the transformer and text encoder from CPU memory). Default: the user config's runtime.memory, else auto.",
    ),
]
GpusOpt = Annotated[
    int | None,
    typer.Option(
        "--gpus-per-clip",
        metavar="N",
        help="Split each LTX-2 sampling stage of a clip across N GPUs of this machine (context parallelism), "
        "or of one host per Ray worker with --executor ray; outputs and cache keys are the one-GPU render's, "
        "to float rounding.",
    ),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        metavar="|".join(EXECUTORS),
        help="What runs the nodes: local (this process, default) or ray (one actor per GPU of a Ray cluster; "
        "pip install 'scenekit[ray]'). Default: the user config's executor.name.",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="ADDR",
        help="The Ray cluster to join (ray://head:10001, auto; implies --executor ray); default: a local Ray on this machine's GPUs.",
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Write the video (and its manifest) here instead, whatever --model and --size say.",
    ),
]


def _options(
    model: str | None,
    cache_dir: Path | None,
    allow_outside: bool,
    variables: list[str] | None,
    size: str | None = None,
    speed: str | None = None,
    memory: str | None = None,
) -> RenderOptions:
    for option, value, allowed in (("--speed", speed, SPEEDS), ("--memory", memory, MEMORIES)):
        if value is not None and value not in allowed:
            err.print(f"error: {option}: unknown value {value!r}; use one of {', '.join(allowed)}", markup=False)
            raise typer.Exit(EXIT_INVALID_SPEC)
    parsed: dict[str, Any] = {}
    for item in variables or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            err.print(f"error: --var expects NAME=VALUE, got {item!r}", markup=False)
            raise typer.Exit(EXIT_INVALID_SPEC)
        try:
            parsed[name] = parse_value(value, Path(f"--var {name}"))
        except SpecError as exc:
            issue = exc.issues[0]
            where = f" (column {issue.location.column})" if issue.location else ""
            err.print(
                f"error: --var {name}: {issue.message}{where}\n  hint: VALUE is YAML; to pass text, quote it: "
                f"--var '{name}=\"...\"'",
                markup=False,
            )
            raise typer.Exit(EXIT_INVALID_SPEC) from None
    return RenderOptions(
        model=model,
        size=_frame_size(size, "--size"),
        cache_dir=cache_dir,
        allow_outside=allow_outside,
        variables=parsed,
        speed=speed,
        memory=memory,
    )


def _version(shown: bool) -> None:
    if shown:
        out.print(f"scenekit {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log more: -v what the cache and runtime do (corrupt entries, stale work, "
            "lock waits, memory placement), -vv debug. Or set SCENEKIT_LOG=debug|info|warning.",
        ),
    ] = 0,
) -> None:
    """Render multi-shot videos from declarative YAML scene specs."""
    configure_logging(verbose)


def _with_executor(options: RenderOptions, executor: str | None, address: str | None) -> RenderOptions:
    """`options` run by `--executor` at `--address` (exit 2 for an unknown executor, or Ray not installed)."""
    if executor is not None and executor not in EXECUTORS:
        err.print(f"error: --executor: unknown value {executor!r}; use one of {', '.join(EXECUTORS)}", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    if address is not None and executor not in (None, "ray"):
        err.print("error: --address: only the ray executor joins a cluster; use --executor ray", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    if address is not None:
        executor = "ray"  # an address names a Ray cluster
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        err.print("error: --executor ray: Ray is not installed; pip install 'scenekit[ray]'", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    return replace(options, executor=executor, address=address)


def _with_gpus(options: RenderOptions, gpus: int | None) -> RenderOptions:
    """`options` with `--gpus-per-clip` (exit 2 below 1, or beyond this machine's GPUs for the local executor;
    the Ray executor checks its cluster's hosts)."""
    if gpus is None:
        return options
    from scenekit.runtime.parallel import parallel_problem

    problem = "must be at least 1" if gpus < 1 else None if options.executor == "ray" else parallel_problem(gpus)
    if problem:
        err.print(f"error: --gpus-per-clip: {problem}", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    return replace(options, gpus_per_clip=gpus)


def _with_output(options: RenderOptions, output: Path | None) -> RenderOptions:
    """`options` writing to `--output` (exit 2 unless it names an .mp4 file)."""
    if output is None:
        return options
    if output.suffix.lower() != ".mp4" or output.is_dir():
        err.print(f"error: --output: {output} is not an .mp4 file name", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    return replace(options, output=output)


def _frame_size(written: str | None, option: str) -> tuple[int, int] | None:
    """WIDTHxHEIGHT from the command line, or exit 2 saying how to write it."""
    if written is None:
        return None
    try:
        return parse_size(written)
    except ValueError as exc:
        err.print(f"error: {option}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC) from None


@overload
def _prepare(spec: Path, options: RenderOptions) -> Prepared: ...
@overload
def _prepare(spec: Path, options: RenderOptions, step: Callable[[Path, RenderOptions], T]) -> T: ...
def _prepare(spec: Path, options: RenderOptions, step: Callable[[Path, RenderOptions], Any] = prepare) -> Any:
    """Prepare (or only `check`) the spec, or exit 2 with its located errors or the option that cannot work."""
    try:
        return step(spec, options)
    except SpecError as exc:
        _exit_invalid(exc, f"{spec}: invalid spec")
    except ExecutorUnavailable as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC) from None


def _exit_invalid(error: SpecError, summary: str) -> NoReturn:
    """Print a SpecError's located issues and `summary` with their count, then exit 2."""
    for issue in error.issues:
        err.print(issue.render(Path.cwd()), markup=False)
    count = len(error.issues)
    err.print(f"{summary} ({count} error{'s' if count != 1 else ''})", markup=False)
    raise typer.Exit(EXIT_INVALID_SPEC) from None


@app.command(cls=_Command)
def validate(
    spec: SpecArg,
    model: ModelOpt = None,
    allow_outside: OutsideOpt = False,
    var: VarOpt = None,
    size: SizeOpt = None,
    speed: SpeedOpt = None,
) -> None:
    """Check a spec (syntax, schema, references, assets, model constraints). Exit 2 when invalid.

    Needs neither weights nor a GPU: what this machine lacks to render the spec is printed as notes.
    """
    checked = _prepare(spec, _options(model, None, allow_outside, var, size, speed), check)
    timeline = checked.timeline
    seconds = float(timeline.total_frames / timeline.fps)
    out.print(
        f"{spec}: ok: {len(timeline.clips)} clips, {timeline.total_frames} frames ({seconds:.3f}s at {float(timeline.fps):g} fps), "
        f"{timeline.size[0]}x{timeline.size[1]}",
        markup=False,
    )
    for issue in checked.machine_problems():
        err.print(
            issue.render(Path.cwd(), "note") + "\n  (the spec is valid; rendering it here needs this)", markup=False
        )


@app.command("render", cls=_Command)
def render_command(
    spec: SpecArg,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    allow_outside: OutsideOpt = False,
    var: VarOpt = None,
    size: SizeOpt = None,
    output: OutputOpt = None,
    speed: SpeedOpt = None,
    memory: MemoryOpt = None,
    gpus_per_clip: GpusOpt = None,
    executor: ExecutorOpt = None,
    address: AddressOpt = None,
) -> None:
    """Render a spec: run what is not cached, stitch, write the output and its manifest.

    With --model or --size the video goes beside the output (NAME.MODEL.WxH.mp4), never over it.
    """
    options = _with_output(_options(model, cache_dir, allow_outside, var, size, speed, memory), output)
    prepared = _prepare(spec, _with_gpus(_with_executor(options, executor, address), gpus_per_clip))
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    try:
        result = render(prepared, RichProgress(out))
    except (KeyboardInterrupt, RenderCancelled):
        err.print("interrupted: finished nodes are cached; run the same command again to resume", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except RenderError as exc:
        err.print(f"render failed: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    timeline = prepared.timeline
    out.print(
        f"wrote {_shown(result.output)} ({timeline.total_frames} frames, {float(timeline.total_frames / timeline.fps):.3f}s) "
        f"in {time.perf_counter() - started:.1f}s; ran {len(result.ran)} node(s)",
        markup=False,
    )
    out.print(f"manifest {_shown(result.manifest)}", markup=False)


@app.command(cls=_Command)
def watch(
    spec: SpecArg,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    allow_outside: OutsideOpt = False,
    var: VarOpt = None,
    size: SizeOpt = None,
    output: OutputOpt = None,
    speed: SpeedOpt = None,
    memory: MemoryOpt = None,
    gpus_per_clip: GpusOpt = None,
    executor: ExecutorOpt = None,
    address: AddressOpt = None,
    preview_first: Annotated[
        bool,
        typer.Option(
            "--preview-first", help="Render with `preview` first (to NAME.preview.mp4), then the full render."
        ),
    ] = False,
    preview_size: Annotated[
        str | None,
        typer.Option(
            "--preview-size",
            metavar="WxH",
            help="Render at this size first (to NAME.preview.mp4), then the full render.",
        ),
    ] = None,
) -> None:
    """Render, then re-render whenever the spec, an include or an asset changes. Ctrl-C exits."""
    from scenekit.watch.console import ConsoleWatchEvents
    from scenekit.watch.loop import WatchLoop

    loop = WatchLoop(
        spec,
        _with_gpus(
            _with_executor(
                _with_output(_options(model, cache_dir, allow_outside, var, size, speed, memory), output),
                executor,
                address,
            ),
            gpus_per_clip,
        ),
        ConsoleWatchEvents(out, err),
        lambda: RichProgress(out),
        preview_first=preview_first,
        preview_size=_frame_size(preview_size, "--preview-size"),
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        loop.run()
    except KeyboardInterrupt:
        loop.stop()
        err.print("stopped watching", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.command(cls=_Command)
def plan(
    spec: SpecArg,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    allow_outside: OutsideOpt = False,
    var: VarOpt = None,
    size: SizeOpt = None,
    output: OutputOpt = None,
    speed: SpeedOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show every node, whether it will run or is cached, and why it runs.

    Reasons compare with the last render of the output this command would write (its manifest).
    """
    prepared = _prepare(spec, _with_output(_options(model, cache_dir, allow_outside, var, size, speed), output))
    planned = prepared.plan()
    target = prepared.timeline.output_file
    if as_json:
        out.print_json(json.dumps({"output": str(target), "nodes": [p.to_json() for p in planned]}))
        return
    table = Table(_name("node"), _name("op"), _name("status"), _text("reason"), _name("key"))
    for item in planned:
        status = "[yellow]run[/]" if item.status == "run" else "[green]cached[/]"
        table.add_row(item.node.id, item.node.op, status, item.reason, item.node.key[:12])
    _print_table(table)
    runs = sum(1 for p in planned if p.status == "run")
    out.print(
        f"{runs} of {len(planned)} nodes will run for {_shown(target)} (compared with {_shown(manifest_path(target))})",
        markup=False,
    )
    for model in dict.fromkeys(p.node.meta["model"] for p in planned if p.status == "run" and "model" in p.node.meta):
        out.print(f"loads {model}", markup=False)


@app.command(cls=_Command)
def graph(
    spec: SpecArg,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    allow_outside: OutsideOpt = False,
    var: VarOpt = None,
    size: SizeOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar="mermaid|dot", help="Mermaid or Graphviz DOT.")
    ] = "mermaid",
) -> None:
    """Print the render DAG as Mermaid (default) or Graphviz DOT."""
    if fmt not in ("mermaid", "dot"):
        err.print("error: --format is mermaid or dot", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    planned = _prepare(spec, _options(model, cache_dir, allow_outside, var, size)).plan()
    nodes, status = [p.node for p in planned], {p.node.id: p.status for p in planned}
    sys.stdout.write(to_mermaid(nodes, status) if fmt == "mermaid" else to_dot(nodes, status))


@app.command(cls=_Command)
def profiles(as_json: Annotated[bool, typer.Option("--json", help="Print the profiles as JSON.")] = False) -> None:
    """List the model profiles, what each needs, and whether its weights are here."""
    from scenekit.profiles import available_profiles
    from scenekit.userconfig import user_settings

    try:
        mappings = [user_settings().models]
    except SpecError as exc:
        _exit_invalid(exc, f"{config_path()}: invalid config")
    found = [_profile_info(profile, mappings) for _, profile in sorted(available_profiles().items())]
    if as_json:
        out.print_json(json.dumps({"profiles": found}))
        return
    table = Table(_name("profile"), _text("needs"), _text("weights"), _text("description"))
    for info in found:
        table.add_row(info["name"], _needs_text(info["needs"]), _weights_text(info["weights"]), info["description"])
    _print_table(table)


def _profile_info(profile: ModelProfile, mappings: list[ModelsMapping]) -> dict[str, Any]:
    """What `scenekit profiles` says of a profile: backend, needs, the files it downloads, and whether they
    are on this machine (`missing`: parts of other repos than the pipeline's that are not)."""
    from scenekit.backends import UnknownBackend
    from scenekit.weights import MissingWeights, missing_parts, resolve_weights

    weights: dict[str, Any] = {"needed": False, "present": True, "where": None, "fetch": None}
    weights |= {"files": [], "missing": [], "problem": None}
    try:
        needs = _profile_weights(profile)
    except UnknownBackend as exc:
        needs = None
        weights.update(present=False, problem=str(exc))
    if needs is not None:
        weights.update(needed=True, present=False, fetch=f"scenekit fetch {profile.name}")
        weights["files"] = [
            {"repo": files.repo, "revision": files.revision, "patterns": list(files.patterns)} for files in needs.files
        ]
        with contextlib.suppress(MissingWeights):
            source = resolve_weights(profile.name, needs.pipeline, mappings)
            missing = missing_parts(source, needs)
            weights.update(present=not missing, where=source.described, missing=missing)
    return {
        "name": profile.name,
        "backend": profile.backend,
        "description": profile.description,
        "needs": profile.requires.model_dump(),
        "weights": weights,
    }


def _profile_weights(profile: ModelProfile) -> ProfileWeights | None:
    """What `profile` downloads, as its family says; None for a family without weights. Raises UnknownBackend."""
    from scenekit.backends import get_family, load

    reference = get_family(profile.backend).weights
    weights: ProfileWeights | None = None if reference is None else load(reference)(profile)
    return weights


def _needs_text(needs: dict[str, Any]) -> str:
    if not needs["gpu"]:
        return "CPU only"
    capability = needs["min_compute_capability"]
    resident = f" ({needs['resident_gb']:g} GB all resident)" if needs.get("resident_gb") else ""
    return f"GPU ~{needs['vram_gb']:g} GB{resident}" + (f", compute capability {capability:g}+" if capability else "")


def _weights_text(weights: dict[str, Any]) -> str:
    if weights["problem"]:
        return weights["problem"]
    if not weights["needed"]:
        return "built in"
    if weights["present"]:
        return f"found: {weights['where']}"
    if weights["missing"]:
        return f"incomplete: {weights['where']} lacks {', '.join(weights['missing'])} ({weights['fetch']})"
    return f"missing ({weights['fetch']})"


@app.command(cls=_Command)
def fetch(
    profile: Annotated[str, typer.Argument(metavar="PROFILE", help="Profile whose weights to download.")],
) -> None:
    """Download the files a profile's renders read into the Hugging Face cache (needs network access)."""
    from scenekit.backends import UnknownBackend
    from scenekit.profiles import available_profiles

    found = available_profiles().get(profile)
    try:
        needs = _profile_weights(found) if found is not None else None
    except UnknownBackend as exc:
        err.print(f"error: profile `{profile}`: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC) from None
    if needs is None:
        err.print(
            f"error: `{profile}` is not a profile with downloadable weights (see `scenekit profiles`)", markup=False
        )
        raise typer.Exit(EXIT_INVALID_SPEC)
    from huggingface_hub import snapshot_download

    folders = []
    for files in needs.files:
        out.print(f"fetching {files.repo}@{files.revision} ({', '.join(files.patterns)}) for {profile} …", markup=False)
        try:
            folders.append(snapshot_download(files.repo, revision=files.revision, allow_patterns=list(files.patterns)))
        except OSError as exc:  # huggingface_hub's HTTP, offline and not-found errors are all OSErrors
            err.print(f"error: fetching {files.repo}@{files.revision} failed: {exc}", markup=False)
            raise typer.Exit(EXIT_FAILED) from None
    for files, folder in zip(needs.files, folders, strict=True):
        out.print(f"{files.repo} for {profile} is in {folder}", markup=False)
    ref = needs.pipeline
    out.print(
        f"to keep renders on exactly this snapshot of {ref.repo}: "
        f"`models: {{{profile}: {ref.repo}@{Path(folders[0]).name}}}` (in the spec or in {config_path()})",
        markup=False,
    )


@app.command(cls=_Command)
def schema(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if the file on disk is stale.")] = False,
    output: Annotated[Path, typer.Option(metavar="FILE", help="Where the JSON Schema lives.")] = Path(
        "schemas/scene.schema.json"
    ),
) -> None:
    """Write (or check) the JSON Schemas generated from the spec models: specs' and, beside it, included files'."""
    from scenekit.spec.schema import schema_files

    files = schema_files(output)
    if check:
        stale = [str(path) for path, text in files.items() if (path.read_text() if path.exists() else "") != text]
        if stale:
            err.print(
                f"{', '.join(stale)} {'is' if len(stale) == 1 else 'are'} stale: run `scenekit schema`", markup=False
            )
            raise typer.Exit(EXIT_FAILED)
        out.print(f"{', '.join(map(str, files))} are up to date", markup=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
        out.print(f"wrote {path}", markup=False)


CacheSpecArg = Annotated[
    Path | None,
    typer.Argument(
        help="Use the cache of this spec's project (default: the project holding the current folder).",
        show_default=False,
        exists=True,
        dir_okay=False,
    ),
]


def _store(spec: Path | None, cache_dir: Path | None) -> CacheStore:
    """The cache `render` uses for `spec`, or for a spec in the current folder; says which folder that is."""
    store = cache_store(find_project_root(spec) if spec is not None else folder_project(Path.cwd()), cache_dir)
    out.print(
        f"cache {store.root}" + ("" if store.root.is_dir() else " (not there: nothing was rendered into it yet)"),
        markup=False,
    )
    return store


@cache_app.command("info", cls=_Command)
def cache_info(spec: CacheSpecArg = None, cache_dir: CacheOpt = None) -> None:
    """Show the cache's size, by operation."""
    store = _store(spec, cache_dir)
    entries = list(store.entries())
    table = Table(_name("op"), Column("entries", justify="right"), Column("size", justify="right"))
    by_op: dict[str, list[int]] = {}
    for entry in entries:
        by_op.setdefault(entry.op, []).append(entry.size)
    for op, sizes in sorted(by_op.items()):
        table.add_row(op, str(len(sizes)), _bytes(sum(sizes)))
    _print_table(table)
    out.print(f"{len(entries)} entries, {_bytes(sum(e.size for e in entries))}", markup=False)


@cache_app.command("prune", cls=_Command)
def cache_prune(
    ctx: typer.Context,
    spec: CacheSpecArg = None,
    cache_dir: CacheOpt = None,
    older_than: Annotated[
        str | None, typer.Option(metavar="AGE", help="Remove entries unused for this long: 7d, 12h, 30m.")
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(metavar="SIZE", help="Remove least recently used entries until the cache fits: 20GB, 500MB."),
    ] = None,
    keep: Annotated[
        list[Path] | None, typer.Option(metavar="SPEC", help="Keep every entry this spec's render uses (repeatable).")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry.")] = False,
) -> None:
    """Remove entries by age, total size or everything, keeping what `--keep` specs use."""
    from scenekit.cache.prune import parse_age, parse_size_bytes, select_for_pruning

    if not (older_than or max_size or everything):
        err.print(
            f"{ctx.get_usage()}\nerror: say what to remove: --older-than AGE, --max-size SIZE or --all "
            "(--keep only protects entries)",
            markup=False,
        )
        raise typer.Exit(EXIT_INVALID_SPEC)
    try:
        age = parse_age(older_than) if older_than else None
        size = parse_size_bytes(max_size) if max_size else None
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC) from None
    store = _store(spec, cache_dir)
    kept = {node.key for path in keep or [] for node in _prepare(path, RenderOptions()).graph.ordered()}
    victims = select_for_pruning(list(store.entries()), kept=kept, everything=everything, older_than=age, max_size=size)
    for entry in victims:
        store.remove(entry.key)
    store.clean_stale()
    out.print(f"removed {len(victims)} entries, {_bytes(sum(e.size for e in victims))}", markup=False)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops a render the way Ctrl-C does: cleanly, resumable."""
    raise KeyboardInterrupt


def _name(header: str) -> Column:
    """A column of names or ids: never wrapped or cut."""
    return Column(header, no_wrap=True)


def _text(header: str) -> Column:
    """A column of free text: wrapped, words longer than the column folded rather than cut."""
    return Column(header, overflow="fold")


_TEXT_MIN = 12  # the narrowest a text column gets before a table grows past the terminal


def _print_table(table: Table) -> None:
    """Print `table` at the terminal's width, or wider when its name columns would not fit whole otherwise
    (piped output, a narrow terminal): names and ids are never cut."""
    texts = [column for column in table.columns if not column.no_wrap]
    for column in texts:
        column.max_width = _TEXT_MIN
    needed = Measurement.get(out, out.options.update_width(sys.maxsize), table).minimum
    for column in texts:
        column.max_width = None
    table.width = needed if needed > out.width else None
    out.print(table)


def _bytes(count: float) -> str:
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@app.command(cls=_Command)
def serve(
    project: Annotated[Path, typer.Argument(help="The project folder to serve.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token (default: $SCENEKIT_API_TOKEN, else one kept beside the user config, made on first start)."
        ),
    ] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No token (only on a loopback host).")] = False,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", metavar="URL", help="Allow cross-origin requests from URL.")
    ] = None,
    executor: ExecutorOpt = None,
    address: AddressOpt = None,
) -> None:
    """Serve PROJECT over HTTP: the render API, and a page at / to watch renders (one render at a time per
    GPU, or every render through the Ray executor)."""
    chosen = _with_executor(RenderOptions(), executor, address)
    try:
        from scenekit.server.serve import run_server
    except ImportError as exc:
        err.print(f"error: the server needs its extra: pip install 'scenekit[server]' ({exc})", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    if not project.is_dir():
        err.print(f"error: {project} is not a folder", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    code = run_server(
        project,
        host,
        port,
        token,
        no_auth,
        cors_origin or [],
        lambda text: out.print(text, markup=False),
        executor=chosen.executor,
        address=chosen.address,
    )
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the `scenekit` console script."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # the CLI shows a message, not a traceback
        if os.environ.get("SCENEKIT_DEBUG"):
            raise
        err.print(f"error: {exc.__class__.__name__}: {exc} (set SCENEKIT_DEBUG=1 for a traceback)", markup=False)
        sys.exit(EXIT_FAILED)
