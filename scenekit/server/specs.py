"""Where a request's spec comes from (text sent, or a file of the project), and its problems as JSON.

A spec sent as text is written into the project folder as `.scenekit-spec-HASH.yaml`, so its paths are
relative to the project folder, as they would be for a spec saved there. Paths sent by a client must stay
inside the project: no `..` out of it, no absolute paths, no links that lead out.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scenekit.errors import SpecIssue
from scenekit.fsutil import atomic_write_text
from scenekit.spec.paths import PROJECT_MARKERS

TEXT_SPEC_PREFIX = ".scenekit-spec-"
TEXT_LABEL = "<spec>"
"""The `file` of a problem in a spec sent as text."""


class OutsideProject(Exception):
    """A path a client sent is not a file of the project (or leaves it)."""


def ensure_project(project: Path) -> Path:
    """The project folder, resolved; it is made a project root (an empty `scenekit.toml`) if it is not one,
    so that every spec in it resolves its paths against this folder and never one above it."""
    project = project.resolve()
    if not project.is_dir():
        raise FileNotFoundError(f"{project} is not a folder")
    if not any((project / marker).exists() for marker in PROJECT_MARKERS):
        (project / "scenekit.toml").write_text("# the scenekit project folder (created by `scenekit serve`)\n")
    return project


def project_file(project: Path, written: str) -> Path:
    """The file `written` (relative to the project) names; OutsideProject unless it is a file inside it,
    reached without leaving it (`..`, an absolute path, or a link out)."""
    if not written or "\0" in written or Path(written).is_absolute() or written.startswith("~"):
        raise OutsideProject(written)
    try:
        path = (project / written).resolve()
        found = path.is_relative_to(project) and path.is_file()
    except OSError:  # a name the filesystem refuses (too long, ...)
        found = False
    if not found:
        raise OutsideProject(written)
    return path


def relative(project: Path, path: Path) -> str:
    """`path` as the API writes it: relative to the project (`<spec>` for a spec sent as text)."""
    if path.name.startswith(TEXT_SPEC_PREFIX) and path.parent == project:
        return TEXT_LABEL
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return path.name


def write_text_spec(project: Path, text: str) -> Path:
    """Keep a spec sent as text in the project (named by its content, so the same text is one file)."""
    path = project / f"{TEXT_SPEC_PREFIX}{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.is_file() or path.read_text(errors="replace") != text:
        atomic_write_text(path, text)
    return path


@contextmanager
def scratch_spec(project: Path, text: str) -> Iterator[Path]:
    """A spec sent only to be checked, in the project folder while it is checked."""
    path = project / f"{TEXT_SPEC_PREFIX}check-{secrets.token_hex(8)}.yaml"
    atomic_write_text(path, text)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def issue_json(issue: SpecIssue, project: Path) -> dict[str, Any]:
    """A located problem: file (relative to the project), line, column, field, message, hint."""
    location = issue.location
    return {
        "file": relative(project, location.file) if location else None,
        "line": location.line if location else None,
        "column": location.column if location else None,
        "field": issue.field,
        "message": issue.message,
        "hint": issue.hint,
    }


def request_issue(field: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """A problem with a request's options rather than its spec (e.g. `size`)."""
    return {"file": None, "line": None, "column": None, "field": field, "message": message, "hint": hint}
