"""The `scenekit` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from ruamel.yaml import YAML

from scenekit.cache import CacheStore
from scenekit.engine.session import RenderOptions, cache_store, check, prepare, render
from scenekit.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID_SPEC, RenderCancelled, RenderError, SpecError
from scenekit.graph.export import to_dot, to_mermaid
from scenekit.units import parse_size
from scenekit.userconfig import config_path
from scenekit.progress import RichProgress

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Render multi-shot videos from declarative YAML scene specs.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect and prune the node cache.")
app.add_typer(cache_app, name="cache")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

SpecArg = Annotated[Path, typer.Argument(help="The scene spec (YAML).", show_default=False)]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Use this model profile for every clip.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Cache folder (default: .scenekit/cache next to the spec, or $SCENEKIT_CACHE_DIR).")]
OutsideOpt = Annotated[bool, typer.Option("--allow-outside", help="Let the spec read and write files outside its project folder.")]
VarOpt = Annotated[list[str] | None, typer.Option("--var", help="Set a template variable: NAME=VALUE (VALUE is YAML).")]
SizeOpt = Annotated[str | None, typer.Option("--size", help="Render every clip at WIDTHxHEIGHT instead (e.g. a quick look at 384x256).")]


def _options(model: str | None, cache_dir: Path | None, allow_outside: bool, variables: list[str] | None,
             size: str | None = None) -> RenderOptions:
    parsed: dict[str, Any] = {}
    for item in variables or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            err.print(f"error: --var expects NAME=VALUE, got {item!r}", markup=False)
            raise typer.Exit(EXIT_INVALID_SPEC)
        parsed[name] = YAML(typ="safe", pure=True).load(value)
    return RenderOptions(model=model, size=_frame_size(size, "--size"), cache_dir=cache_dir, allow_outside=allow_outside, variables=parsed)


def _frame_size(written: str | None, option: str) -> tuple[int, int] | None:
    """WIDTHxHEIGHT from the command line, or exit 2 saying how to write it."""
    if written is None:
        return None
    try:
        return parse_size(written)
    except ValueError as exc:
        err.print(f"error: {option}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC) from None


def _prepare(spec: Path, options: RenderOptions, step: Callable[[Path, RenderOptions], T] = prepare) -> T:
    """Prepare (or only `check`) the spec, or exit 2 with its located errors."""
    try:
        return step(spec, options)
    except SpecError as exc:
        _exit_invalid(exc, f"{spec}: invalid spec")


def _exit_invalid(error: SpecError, summary: str) -> NoReturn:
    """Print a SpecError's located issues and `summary` with their count, then exit 2."""
    for issue in error.issues:
        err.print(issue.render(Path.cwd()), markup=False)
    count = len(error.issues)
    err.print(f"{summary} ({count} error{'s' if count != 1 else ''})", markup=False)
    raise typer.Exit(EXIT_INVALID_SPEC) from None


@app.command()
def validate(spec: SpecArg, model: ModelOpt = None, allow_outside: OutsideOpt = False, var: VarOpt = None,
             size: SizeOpt = None) -> None:
    """Check a spec (syntax, schema, references, assets, model constraints). Exit 2 when invalid.

    Needs neither weights nor a GPU: what this machine lacks to render the spec is printed as notes.
    """
    checked = _prepare(spec, _options(model, None, allow_outside, var, size), check)
    timeline = checked.timeline
    seconds = float(timeline.total_frames / timeline.fps)
    out.print(f"{spec}: ok: {len(timeline.clips)} clips, {timeline.total_frames} frames ({seconds:.3f}s at {float(timeline.fps):g} fps), "
              f"{timeline.size[0]}x{timeline.size[1]}", markup=False)
    for issue in checked.machine_problems():
        err.print(issue.render(Path.cwd(), "note") + "\n  (the spec is valid; rendering it here needs this)", markup=False)


@app.command("render")
def render_command(
    spec: SpecArg, model: ModelOpt = None, cache_dir: CacheOpt = None, allow_outside: OutsideOpt = False, var: VarOpt = None,
    size: SizeOpt = None,
) -> None:
    """Render a spec: run what is not cached, stitch, write the output and its manifest."""
    prepared = _prepare(spec, _options(model, cache_dir, allow_outside, var, size))
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
    out.print(f"wrote {_shown(result.output)} ({timeline.total_frames} frames, {float(timeline.total_frames / timeline.fps):.3f}s) "
              f"in {time.perf_counter() - started:.1f}s; ran {len(result.ran)} node(s)", markup=False)
    out.print(f"manifest {_shown(result.manifest)}", markup=False)


@app.command()
def watch(
    spec: SpecArg, model: ModelOpt = None, cache_dir: CacheOpt = None, allow_outside: OutsideOpt = False, var: VarOpt = None,
    size: SizeOpt = None,
    preview_first: Annotated[bool, typer.Option("--preview-first", help="Render with `preview` first (to NAME.preview.mp4), then the full render.")] = False,
    preview_size: Annotated[str | None, typer.Option("--preview-size", help="Render at WIDTHxHEIGHT first (to NAME.preview.mp4), then the full render.")] = None,
) -> None:
    """Render, then re-render whenever the spec, an include or an asset changes. Ctrl-C exits."""
    from scenekit.watch.console import ConsoleWatchEvents
    from scenekit.watch.loop import WatchLoop

    loop = WatchLoop(spec, _options(model, cache_dir, allow_outside, var, size), ConsoleWatchEvents(out, err),
                     lambda: RichProgress(out), preview_first=preview_first, preview_size=_frame_size(preview_size, "--preview-size"))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        loop.run()
    except KeyboardInterrupt:
        loop.stop()
        err.print("stopped watching", markup=False)


@app.command()
def plan(
    spec: SpecArg, model: ModelOpt = None, cache_dir: CacheOpt = None, allow_outside: OutsideOpt = False, var: VarOpt = None,
    size: SizeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show every node, whether it will run or is cached, and why it runs."""
    planned = _prepare(spec, _options(model, cache_dir, allow_outside, var, size)).plan()
    if as_json:
        out.print_json(json.dumps({"nodes": [p.to_json() for p in planned]}))
        return
    table = Table("node", "op", "status", "reason", "key")
    for item in planned:
        status = "[yellow]run[/]" if item.status == "run" else "[green]cached[/]"
        table.add_row(item.node.id, item.node.op, status, item.reason, item.node.key[:12])
    out.print(table)
    runs = sum(1 for p in planned if p.status == "run")
    out.print(f"{runs} of {len(planned)} nodes will run", markup=False)


@app.command()
def graph(
    spec: SpecArg, model: ModelOpt = None, cache_dir: CacheOpt = None, allow_outside: OutsideOpt = False, var: VarOpt = None,
    size: SizeOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Print the render DAG as Mermaid (default) or Graphviz DOT."""
    if fmt not in ("mermaid", "dot"):
        err.print("error: --format is mermaid or dot", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    planned = _prepare(spec, _options(model, cache_dir, allow_outside, var, size)).plan()
    sys.stdout.write(to_mermaid(planned) if fmt == "mermaid" else to_dot(planned))


@app.command()
def profiles() -> None:
    """List the model profiles, what each needs, and whether its weights are here."""
    from scenekit.profiles import available_profiles
    from scenekit.userconfig import user_models
    from scenekit.weights import MissingWeights, resolve_weights

    try:
        mappings = [user_models()]
    except SpecError as exc:
        _exit_invalid(exc, f"{config_path()}: invalid config")
    table = Table("profile", "needs", "weights", "description")
    for profile in available_profiles().values():
        needs = "CPU only"
        if profile.requires.gpu:
            capability = profile.requires.min_compute_capability
            needs = f"GPU ~{profile.requires.vram_gb:g} GB" + (f", compute capability {capability:g}+" if capability else "")
        weights = "built in"
        if "ltx2" in (profile.model_extra or {}):
            from scenekit.ltx2.settings import ltx2_settings

            default = ltx2_settings(profile).weights.pipeline
            try:
                weights = "found: " + resolve_weights(profile.name, default, mappings).described
            except MissingWeights:
                weights = f"missing (scenekit fetch {profile.name})"
        table.add_row(profile.name, needs, weights, profile.description)
    out.print(table)


@app.command()
def fetch(profile: Annotated[str, typer.Argument(help="Profile whose weights to download.")]) -> None:
    """Download a profile's weights into the Hugging Face cache (needs network access)."""
    from scenekit.profiles import available_profiles

    found = available_profiles().get(profile)
    if found is None or "ltx2" not in (found.model_extra or {}):
        err.print(f"error: `{profile}` is not a profile with downloadable weights (see `scenekit profiles`)", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC)
    from huggingface_hub import snapshot_download

    from scenekit.ltx2.settings import ltx2_settings

    settings = ltx2_settings(found)
    ref = settings.weights.pipeline
    out.print(f"fetching {ref.repo}@{ref.revision} for {profile} …", markup=False)
    folder = snapshot_download(ref.repo, revision=ref.revision, allow_patterns=settings.hub_files())
    out.print(f"weights for {profile} are in {folder}", markup=False)
    out.print(f"to keep renders on exactly these weights: `models: {{{profile}: {ref.repo}@{Path(folder).name}}}` "
              f"(in the spec or in {config_path()})", markup=False)


@app.command()
def schema(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if the file on disk is stale.")] = False,
    output: Annotated[Path, typer.Option(help="Where the JSON Schema lives.")] = Path("schemas/scene.schema.json"),
) -> None:
    """Write (or check) the JSON Schema generated from the spec models."""
    from scenekit.spec.schema import schema_text

    text = schema_text()
    if check:
        current = output.read_text() if output.exists() else ""
        if current != text:
            err.print(f"{output} is stale: run `scenekit schema`", markup=False)
            raise typer.Exit(EXIT_FAILED)
        out.print(f"{output} is up to date", markup=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    out.print(f"wrote {output}", markup=False)


def _store(spec: Path | None, cache_dir: Path | None) -> CacheStore:
    return cache_store(spec.parent if spec is not None else Path.cwd(), cache_dir)


@cache_app.command("info")
def cache_info(
    spec: Annotated[Path | None, typer.Argument(help="Use the cache of this spec.", show_default=False)] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Show the cache's size, by operation."""
    store = _store(spec, cache_dir)
    entries = list(store.entries())
    table = Table("op", "entries", "size")
    by_op: dict[str, list[int]] = {}
    for entry in entries:
        by_op.setdefault(entry.op, []).append(entry.size)
    for op, sizes in sorted(by_op.items()):
        table.add_row(op, str(len(sizes)), _bytes(sum(sizes)))
    out.print(f"cache {store.root}", markup=False)
    out.print(table)
    out.print(f"{len(entries)} entries, {_bytes(sum(e.size for e in entries))}", markup=False)


@cache_app.command("prune")
def cache_prune(
    spec: Annotated[Path | None, typer.Argument(help="Use the cache of this spec.", show_default=False)] = None,
    cache_dir: CacheOpt = None,
    older_than: Annotated[str | None, typer.Option(help="Remove entries unused for this long: 7d, 12h, 30m.")] = None,
    max_size: Annotated[str | None, typer.Option(help="Remove least recently used entries until the cache fits: 20GB, 500MB.")] = None,
    keep: Annotated[list[Path] | None, typer.Option(help="Keep every entry this spec's render uses (repeatable).")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry.")] = False,
) -> None:
    """Remove entries by age, total size or everything, keeping what `--keep` specs use."""
    from scenekit.cache.prune import parse_age, parse_size_bytes, select_for_pruning

    store = _store(spec, cache_dir)
    kept = {node.key for path in keep or [] for node in _prepare(path, RenderOptions()).graph.ordered()}
    try:
        victims = select_for_pruning(list(store.entries()), kept=kept, everything=everything,
                                     older_than=parse_age(older_than) if older_than else None,
                                     max_size=parse_size_bytes(max_size) if max_size else None)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID_SPEC) from None
    for entry in victims:
        store.remove(entry.key)
    store.clean_stale()
    out.print(f"removed {len(victims)} entries, {_bytes(sum(e.size for e in victims))}", markup=False)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops a render the way Ctrl-C does: cleanly, resumable."""
    raise KeyboardInterrupt


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


def main() -> None:
    """Entry point of the `scenekit` console script."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the CLI shows a message, not a traceback
        if os.environ.get("SCENEKIT_DEBUG"):
            raise
        err.print(f"error: {exc.__class__.__name__}: {exc} (set SCENEKIT_DEBUG=1 for a traceback)", markup=False)
        sys.exit(EXIT_FAILED)
