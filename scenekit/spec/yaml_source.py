"""Read YAML with ruamel.yaml into plain data plus a source map; YAML errors become located issues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from scenekit.errors import FieldPath, Location, SpecError, SpecIssue
from scenekit.spec.source import SourceMap


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse one YAML file; returns plain dicts/lists/scalars and where each came from."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue(f"file not found: {path}", hint="check the path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecIssue(f"cannot read {path}: {exc}", Location(path, 1, 1))]) from None
    try:
        document = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            [SpecIssue(f"YAML syntax: {problem}", location, hint="fix the YAML syntax at this place (indentation, quotes, colons)")]
        ) from None
    except YAMLError as exc:
        raise SpecError([SpecIssue(f"YAML syntax: {exc}", Location(path, 1, 1))]) from None
    sources = SourceMap()
    sources.values[()] = Location(path, 1, 1)
    return _plain(document, (), path, sources), sources


MAX_VALUES = 200_000


def _plain(node: Any, path: FieldPath, file: Path, sources: SourceMap) -> Any:
    if len(sources.values) > MAX_VALUES:
        raise SpecError([SpecIssue(f"the spec expands to more than {MAX_VALUES} values (nested YAML aliases?)",
                                   Location(file, 1, 1), hint="write the values out instead of nesting aliases")])
    if isinstance(node, CommentedMap):
        result = {}
        for key in node:
            key_line, key_col = node.lc.key(key)
            value_line, value_col = node.lc.value(key)
            child = path + (str(key),)
            sources.keys[child] = Location(file, key_line + 1, key_col + 1)
            sources.values[child] = Location(file, value_line + 1, value_col + 1)
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
