"""Whether the output video can be written where a spec asks: before anything renders, so a render
never fails (or overwrites an input) after its work is done."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from scenekit.fsutil import TEMP_NAME_ROOM

#: Bytes the files written beside the output add to its name: the manifest (`NAME.manifest.json` for
#: `NAME.mp4`) and the temp file it is first written to (`.FILE.RANDOM.tmp`).
DERIVED_NAME_ROOM = len(".manifest.json") - len(".mp4") + TEMP_NAME_ROOM


def manifest_path(output: Path) -> Path:
    """`renders/x.mp4` -> `renders/x.manifest.json`."""
    return output.with_suffix(".manifest.json")


def _existing_ancestor(path: Path) -> Path:
    for folder in path.parents:
        if folder.exists():
            return folder
    return Path(path.anchor)


def _limit(folder: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def _same_file(a: Path, b: Path) -> bool:
    return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))


def output_problem(path: Path, written: str, inputs: Iterable[tuple[Path, str]]) -> tuple[str, str] | None:
    """(message, hint) when the output cannot be written at `path` (as `written` in the spec) or would
    overwrite one of `inputs` (path, what it is), else None."""
    if path.is_dir():
        return f"{written} is a folder", f"name an .mp4 file inside it, e.g. {written.rstrip('/')}/{path.name}.mp4"
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so {written} cannot be made inside it", "write the output into a folder"
    longest = _limit(ancestor, "PC_NAME_MAX", 255) - DERIVED_NAME_ROOM
    if len(os.fsencode(path.name)) > longest:
        message = (
            f"the file name is {len(os.fsencode(path.name))} bytes; with the files written beside it (its "
            f"manifest and temporary files) this file system takes at most {longest}"
        )
        return message, f"shorten the file name to at most {longest} bytes"
    path_max = _limit(ancestor, "PC_PATH_MAX", 4096)
    if len(os.fsencode(str(path))) + DERIVED_NAME_ROOM >= path_max:
        return (
            f"the path {path} is too long for this file system ({path_max} bytes with the files written beside it)",
            "write the output into a folder with a shorter path",
        )
    for source, what in inputs:
        for target in (path, manifest_path(path)):
            if _same_file(target, source):
                return (
                    f"writing {target.name} would overwrite {what}, an input of this scene",
                    "write the output to another file, e.g. renders/NAME.mp4",
                )
    return None
