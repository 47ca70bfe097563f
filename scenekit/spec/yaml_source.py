"""Read YAML with ruamel.yaml into plain data plus a source map; YAML errors become located issues."""

from __future__ import annotations

import hashlib

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from scenekit.errors import FieldPath, Location, SpecError, SpecIssue
from scenekit.spec.source import SourceMap


def read_yaml(path: Path) -> tuple[Any, SourceMap, str]:
    """Parse one YAML file; returns plain dicts/lists/scalars, where each came from, and the sha256 of
    the bytes parsed."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError([SpecIssue(f"file not found: {path}", hint="check the path")]) from None
    except OSError as exc:
        raise SpecError([SpecIssue(f"cannot read {path}: {exc}", Location(path, 1, 1))]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError([SpecIssue(f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})", Location(path, line, column),
                                   hint="save the file as UTF-8")]) from None
    try:
        document = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        ran_off_the_end = "end of stream" in (exc.problem or "")
        mark = (exc.context_mark if ran_off_the_end else None) or exc.problem_mark or exc.context_mark
        location = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path, 1, 1)
        problem = "; ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise SpecError(
            [SpecIssue(f"YAML syntax: {problem}", location, hint="fix the YAML syntax at this place (indentation, quotes, colons)")]
        ) from None
    except YAMLError as exc:
        raise SpecError([SpecIssue(f"YAML syntax: {exc}", Location(path, 1, 1))]) from None
    sources = SourceMap()
    sources.values[()] = Location(path, 1, 1)
    return _plain(document, (), path, sources), sources, hashlib.sha256(raw).hexdigest()


MAX_VALUES = 200_000


def _plain(node: Any, path: FieldPath, file: Path, sources: SourceMap) -> Any:
    if len(sources.values) > MAX_VALUES:
        raise SpecError([SpecIssue(f"the spec expands to more than {MAX_VALUES} values (nested YAML aliases?)",
                                   Location(file, 1, 1), hint="write the values out instead of nesting aliases")])
    if isinstance(node, CommentedMap):
        result = {}
        for key in node:
            child = path + (str(key),)
            sources.keys[child] = _mark(node, file, key, 0)
            sources.values[child] = _mark(node, file, key, 2)
            result[str(key)] = _plain(node[key], child, file, sources)
        return result
    if isinstance(node, CommentedSeq):
        result = []
        for index, item in enumerate(node):
            line, col = node.lc.item(index)
            sources.values[path + (index,)] = Location(file, line + 1, col + 1)
            result.append(_plain(item, path + (index,), file, sources))
        return result
    if isinstance(node, str):
        return str(node)
    if hasattr(node, "__float__") and not isinstance(node, int | float | bool):
        return float(node)
    return node


def _mark(node: CommentedMap, file: Path, key: Any, offset: int) -> Location:
    """Where a key (offset 0) or its value (offset 2) is; merged keys (`<<: *anchor`) point at the mapping."""
    position = node.lc.data.get(key)
    if position is None:
        return Location(file, node.lc.line + 1, node.lc.col + 1)
    return Location(file, position[offset] + 1, position[offset + 1] + 1)
