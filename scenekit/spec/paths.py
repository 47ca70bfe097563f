"""Path rules: spec paths are relative to the spec's folder and stay inside the project folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROJECT_MARKERS = ("scenekit.toml", ".git")


def find_project_root(spec_file: Path) -> Path:
    """The nearest folder above the spec holding `scenekit.toml` or `.git`; else the spec's folder."""
    folder = spec_file.resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return folder


@dataclass(frozen=True)
class PathPolicy:
    """Resolves paths written in a spec and keeps them inside the project folder."""

    root: Path
    allow_outside: bool = False

    def resolve(self, written: str, base_dir: Path) -> Path:
        """Absolute path of `written` (relative to `base_dir`); ValueError when it leaves the project or
        the system cannot look it up (a name too long, a NUL byte, no permission), so that checking the
        returned path (`is_file()`, `stat()`) can only find that it is missing."""
        if not written.strip():
            raise ValueError("the path is empty")
        if "\0" in written:
            raise ValueError("the path contains a NUL character")
        path = (base_dir / written).resolve()
        _check_usable(path, written)
        if not self.allow_outside and not path.is_relative_to(self.root.resolve()):
            raise ValueError(
                f"'{written}' resolves to {path}, outside the project folder {self.root}; "
                "move the file into the project or render with --allow-outside"
            )
        return path


def _check_usable(path: Path, written: str) -> None:
    """Raise ValueError when looking `path` up fails for any reason but its not being there."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise ValueError(f"cannot use '{_shortened(written)}': {exc.strerror or exc}") from None


def _shortened(written: str) -> str:
    return written if len(written) <= 80 else f"{written[:40]}…{written[-20:]}"
