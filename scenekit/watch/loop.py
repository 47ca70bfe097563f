"""The watch loop: re-plan on every real change, cancel stale work, render what changed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from scenekit.engine.events import RenderEvents
from scenekit.engine.execute import Cancellation
from scenekit.engine.session import (
    Prepared,
    RenderOptions,
    RenderResult,
    prepare,
    render,
)
from scenekit.errors import ExecutorUnavailable, RenderCancelled, RenderError, SpecError, SpecIssue
from scenekit.spec.loader import load_spec
from scenekit.spec.paths import PathPolicy, find_project_root
from scenekit.watch.diff import spec_changes
from scenekit.watch.files import FileWatcher
from scenekit.watch.named import named_files

PREVIEW_MODEL = "preview"

log = logging.getLogger(__name__)


class WatchEvents(Protocol):
    """What the watch loop reports (to the terminal, or to tests)."""

    def state(self, text: str) -> None:
        """The state at a glance: idle, rendering node k of n, error."""

    def changed(self, changes: list[str], reruns: dict[str, str]) -> None:
        """Fields and assets that changed, and the nodes that will re-run with their reasons."""

    def invalid(self, issues: list[SpecIssue]) -> None:
        """The spec on disk is invalid; the last good render stays."""

    def rendered(self, label: str, result: RenderResult, seconds: float) -> None:
        """A render pass finished."""

    def cancelled(self, label: str) -> None:
        """A render pass was cancelled because the spec changed."""

    def failed(self, label: str, message: str) -> None:
        """A render pass failed."""


@dataclass
class _Pass:
    label: str
    prepared: Prepared


class WatchLoop:
    """Keeps one process alive and re-renders a spec whenever it, an include or an asset changes."""

    def __init__(
        self,
        spec: Path,
        options: RenderOptions,
        events: WatchEvents,
        render_events: Callable[[], RenderEvents],
        *,
        preview_first: bool = False,
        preview_size: tuple[int, int] | None = None,
    ):
        self.spec = spec
        self.options = options
        self.events = events
        self.render_events = render_events
        self.preview_first = preview_first
        self.preview_size = preview_size
        self.stop_requested = threading.Event()
        self._current: Prepared | None = None
        self._thread: threading.Thread | None = None
        self._cancellation = Cancellation()
        self._files = FileWatcher([spec])

    def run(self) -> None:
        """Render now, then on every change until `stop()`."""
        self._files.start()
        try:
            self._reload(initial=True)
            while not self.stop_requested.is_set():
                saved = self._files.wait_for_change(timeout=0.2)
                if saved:
                    self._reload(initial=False, saved=saved)
        finally:
            self._cancel_render(frozenset())
            self._files.stop()

    def stop(self) -> None:
        self.stop_requested.set()

    def _reload(self, *, initial: bool, saved: list[Path] | None = None) -> None:
        try:
            passes = self._prepare_passes()
            reruns = {p.node.id: p.reason for item in passes for p in item.prepared.plan() if p.status == "run"}
        except SpecError as exc:
            self._watch_named_files()
            self.events.invalid(exc.issues)
            self.events.state("error: the spec is invalid; fix it and save (the last good render stays)")
            return
        except (OSError, ExecutorUnavailable) as exc:  # an include gone mid-save, the cache or cluster unreachable
            self._failed("render", exc)
            return
        full = passes[-1].prepared
        self._files.set_files([*full.loaded.files, *full.asset_files, *named_files(full.loaded, self._policy())])
        changes = ["new"] if initial or self._current is None else spec_changes(self._current, full, saved or [])
        self.events.changed(changes, reruns)
        self._cancel_render(frozenset(node.key for item in passes for node in item.prepared.graph.ordered()))
        self._current = full
        self._cancellation = Cancellation()
        self._thread = threading.Thread(target=self._render_passes, args=(passes, self._cancellation), daemon=True)
        self._thread.start()

    def _policy(self) -> PathPolicy:
        return PathPolicy(find_project_root(self.spec), self.options.allow_outside)

    def _watch_named_files(self) -> None:
        """Watch what an invalid spec names too (its includes, a LoRA file it names that is not there yet), so
        saving it renders; a spec that cannot even be read keeps the files watched so far."""
        try:
            loaded = load_spec(self.spec, self._policy(), self.options.variables)
        except (SpecError, OSError):
            return
        self._files.add_files([*loaded.files, *named_files(loaded, self._policy())])

    def _prepare_passes(self) -> list[_Pass]:
        """The full render, after a quick preview pass when asked for one: with the `preview` model
        (`preview_first`), at a lower size (`preview_size`), or both."""
        full = prepare(self.spec, self.options)
        models = {clip.profile.name for clip in full.timeline.clips}
        preview_model = self.preview_first and models != {PREVIEW_MODEL}
        if not preview_model and self.preview_size is None:
            return [_Pass("render", full)]
        options = replace(self.options, output_variant=PREVIEW_MODEL)
        if preview_model:
            options = replace(options, model=PREVIEW_MODEL)
        if self.preview_size is not None:
            options = replace(options, size=self.preview_size)
        return [_Pass("preview", prepare(self.spec, options)), _Pass("render", full)]

    def _cancel_render(self, keep: frozenset[str]) -> None:
        """Stop the running render: the node it is running goes on only if its key is in `keep`."""
        if self._thread is not None and self._thread.is_alive():
            self._cancellation.cancel(keep)
            self._thread.join()

    def _render_passes(self, passes: list[_Pass], cancellation: Cancellation) -> None:
        for item in passes:
            started = time.perf_counter()
            try:
                result = render(item.prepared, self.render_events(), cancellation)
            except RenderCancelled:
                self.events.cancelled(item.label)
                return
            except Exception as exc:  # whatever failed, the watch goes on and the next save renders again
                self._failed(item.label, exc)
                return
            self.events.rendered(item.label, result, time.perf_counter() - started)
        self.events.state("idle: watching for changes")

    def _failed(self, label: str, error: Exception) -> None:
        """Report a failed pass; the next save of any watched file renders again, changed or not."""
        self._files.rearm()
        log.debug("%s failed", label, exc_info=error)
        message = str(error) if isinstance(error, (RenderError, OSError)) else f"{error.__class__.__name__}: {error}"
        self.events.failed(label, message)
        self.events.state("error: render failed; waiting for the next save")
