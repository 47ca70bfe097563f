"""What changed between two versions of a spec, in the spec's own terms."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scenekit.engine.session import Prepared
from scenekit.errors import FieldPath


def _flatten(value: Any, path: FieldPath, into: dict[FieldPath, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, path + (key,), into)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _flatten(item, path + (index,), into)
        into[path + ("#",)] = len(value)
    else:
        into[path] = value


def spec_changes(old: Prepared, new: Prepared, saved: Iterable[Path] = ()) -> list[str]:
    """Changed fields (`clips[2].prompt`, `defaults.fps`) and assets (`asset assets/sea.png`): those the
    render reads, and the other `saved` files that are not spec files (a LoRA the `preview` model ignores)."""
    before: dict[FieldPath, Any] = {}
    after: dict[FieldPath, Any] = {}
    _flatten(old.loaded.spec.model_dump(by_alias=True, exclude={"vars", "include"}), (), before)
    _flatten(new.loaded.spec.model_dump(by_alias=True, exclude={"vars", "include"}), (), after)
    changed: list[str] = []
    for path in sorted(set(before) | set(after), key=str):
        if before.get(path) != after.get(path):
            field = path[:-1] if path[-1] == "#" else path
            shown = new.loaded.sources.display(field) if field else "spec"
            if shown not in changed:
                changed.append(shown)
    old_assets = {a.written: a.sha256 for n in old.graph.ordered() for a in n.files.values()}
    for node in new.graph.ordered():
        for asset in node.files.values():
            label = f"asset {asset.written}"
            if asset.written in old_assets and old_assets[asset.written] != asset.sha256 and label not in changed:
                changed.append(label)
    read = {*new.loaded.files, *(a.path for n in new.graph.ordered() for a in n.files.values())}  # compared above
    for file in saved:
        label = f"asset {Path(os.path.relpath(file, new.loaded.path.parent)).as_posix()}"
        if file not in read and label not in changed:
            changed.append(label)
    return changed
