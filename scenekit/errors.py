"""Errors that point at the place in a spec where the problem is."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

FieldPath = tuple[str | int, ...]

EXIT_FAILED = 1
EXIT_INVALID_SPEC = 2
EXIT_INTERRUPTED = 130


def format_field(path: FieldPath) -> str:
    """`("clips", 1, "overlap")` -> `clips[1].overlap`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True)
class Location:
    """A 1-based line and column in a file."""

    file: Path
    line: int
    column: int

    def render(self, base: Path | None = None) -> str:
        file = self.file
        if base is not None:
            with contextlib.suppress(ValueError):
                file = self.file.relative_to(base)
        return f"{file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec: where, which field, what is wrong and what to do."""

    message: str
    location: Location | None = None
    field: str | None = None
    hint: str | None = None

    def render(self, base: Path | None = None, severity: str = "error") -> str:
        where = self.location.render(base) if self.location else "<spec>"
        head = f"{where}: {severity}: "
        if self.field:
            head += f"{self.field}: "
        text = head + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SpecError(Exception):
    """An invalid spec; carries every issue found."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(issue.render() for issue in issues))


class RenderError(Exception):
    """A node failed while rendering."""


class ExecutorUnavailable(RenderError):
    """The executor cannot take renders: a Ray cluster that cannot be reached or joined, or without the GPUs
    asked for; the message starts with the command-line option to change (`--address: ...`)."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")


class RenderCancelled(Exception):
    """A render was cancelled at a safe point."""
