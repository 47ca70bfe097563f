"""Watch-mode reports on the terminal."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from scenekit.engine.session import RenderResult
from scenekit.errors import SpecIssue


class ConsoleWatchEvents:
    """Prints what changed, what re-runs, errors, and the state at a glance."""

    def __init__(self, out: Console, err: Console):
        self.out = out
        self.err = err

    def state(self, text: str) -> None:
        self.out.print(f"[bold]●[/] {text}", highlight=False)

    def changed(self, changes: list[str], reruns: dict[str, str]) -> None:
        self.out.rule(style="dim")
        if changes != ["new"]:
            self.out.print("changed: " + ", ".join(changes), markup=False, highlight=False)
        if reruns:
            for node, reason in reruns.items():
                self.out.print(f"  re-run {node}: {reason}", markup=False, highlight=False)
        else:
            self.out.print("  nothing to re-run", markup=False, highlight=False)

    def invalid(self, issues: list[SpecIssue]) -> None:
        for issue in issues:
            self.err.print(issue.render(Path.cwd()), markup=False)

    def rendered(self, label: str, result: RenderResult, seconds: float) -> None:
        self.out.print(
            f"{label}: wrote {result.output} in {seconds:.1f}s ({len(result.ran)} node(s) ran)",
            markup=False,
            highlight=False,
        )

    def cancelled(self, label: str) -> None:
        self.out.print(f"{label}: cancelled, the spec changed", markup=False, highlight=False)

    def failed(self, label: str, message: str) -> None:
        self.err.print(f"{label} failed: {message}", markup=False)
