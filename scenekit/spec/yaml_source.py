"""Read YAML with ruamel.yaml into plain data plus a source map; YAML errors become located issues.

Reading is bounded while it happens, not after: a file's size is checked before it is read, and the
composer counts values and nesting as the parser produces them (`scenekit.spec.limits`). Every value
constructor is wrapped, so a value its tag cannot take (`!!int 1.5`, a 5,000-digit number) is a
located error rather than whatever Python raises."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import GeneratorType
from typing import Any, ClassVar

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from scenekit.errors import FieldPath, Location, SpecError, SpecIssue
from scenekit.spec.limits import (
    MAX_EXPANDED_VALUES,
    MAX_SPEC_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
)
from scenekit.spec.source import SourceMap

_SYNTAX_HINT = "fix the YAML syntax at this place (indentation, quotes, colons)"
_VALUE_HINT = "write a value of that type, or quote it to make it a string"
_SPLIT_HINT = "make the spec smaller: generate repeated clips with a `for:` loop instead of writing them out"


@dataclass
class ReadBudget:
    """What one spec and its includes may still read: bytes (`MAX_SPEC_BYTES`) and YAML values (`MAX_YAML_NODES`)."""

    bytes_left: int = MAX_SPEC_BYTES
    nodes_left: int = MAX_YAML_NODES


def read_yaml(path: Path, budget: ReadBudget | None = None) -> tuple[Any, SourceMap, str]:
    """Parse one YAML file, charging it to `budget` (a fresh one when None); returns plain
    dicts/lists/scalars, where each came from, and the sha256 of the bytes parsed."""
    budget = budget if budget is not None else ReadBudget()
    raw = _read_bytes(path, budget)
    data, sources = _plain_document(_parse(_decode(raw, path), path, budget), path)
    return data, sources, hashlib.sha256(raw).hexdigest()


def parse_value(text: str, origin: Path) -> Any:
    """One YAML value given outside a file (e.g. `--var NAME=VALUE`), with the same caps as a spec;
    raises SpecError located in `origin`, a name standing for the file (e.g. `--var NAME`)."""
    return _plain_document(_parse(text, origin, ReadBudget()), origin)[0]


def _read_bytes(path: Path, budget: ReadBudget) -> bytes:
    """The file's bytes, refused before reading when they would exceed what the budget has left."""
    try:
        size = path.stat().st_size
        if size > budget.bytes_left:
            raise _too_large(path, f"{size:,} bytes")
        with path.open("rb") as handle:
            raw = handle.read(budget.bytes_left + 1)  # the file may have grown, or be a device
    except FileNotFoundError:
        raise SpecError([SpecIssue(f"file not found: {path}", hint="check the path")]) from None
    except OSError as exc:
        raise SpecError([SpecIssue(f"cannot read {path}: {exc.strerror or exc}", Location(path, 1, 1))]) from None
    if len(raw) > budget.bytes_left:
        raise _too_large(path, f"more than {budget.bytes_left:,} bytes")
    budget.bytes_left -= len(raw)
    return raw


def _too_large(path: Path, size: str) -> SpecError:
    return SpecError(
        [
            SpecIssue(
                f"{path.name} is too large ({size}): a spec and its includes may have at most {MAX_SPEC_BYTES:,} bytes together",
                Location(path, 1, 1),
                hint=_SPLIT_HINT,
            )
        ]
    )


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            [
                SpecIssue(
                    f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                    Location(path, line, column),
                    hint="save the file as UTF-8",
                )
            ]
        ) from None


def _parse(text: str, path: Path, budget: ReadBudget) -> Any:
    """ruamel's round-trip document for `text`; raises SpecError located in `path`."""
    try:
        return _SpecYAML(budget).load(text)
    except MarkedYAMLError as exc:
        raise SpecError([_marked_issue(exc, path)]) from None
    except ReaderError as exc:
        raise SpecError(
            [
                SpecIssue(
                    f"the file has a character YAML does not allow (U+{exc.character:04X})",
                    _text_location(text, exc.position, path),
                    hint="remove it; inside double quotes it may be written as an escape such as \\x07",
                )
            ]
        ) from None
    except YAMLError as exc:
        raise SpecError([SpecIssue(f"YAML syntax: {exc}", Location(path, 1, 1), hint=_SYNTAX_HINT)]) from None


def _text_location(text: str, position: int, path: Path) -> Location:
    """Where the character at index `position` of `text` is."""
    line_start = text.rfind("\n", 0, position) + 1
    return Location(path, text.count("\n", 0, position) + 1, position - line_start + 1)


def _marked_issue(exc: MarkedYAMLError, path: Path) -> SpecIssue:
    ran_off_the_end = "end of stream" in (exc.problem or "")
    mark = (exc.context_mark if ran_off_the_end else None) or exc.problem_mark or exc.context_mark
    location = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path, 1, 1)
    if isinstance(exc, _SpecYAMLError):
        return SpecIssue(exc.problem, location, hint=exc.hint)
    if isinstance(exc, ConstructorError):
        return SpecIssue(f"YAML value: {exc.problem}", location, hint=_VALUE_HINT)
    problem = "; ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
    return SpecIssue(f"YAML syntax: {problem}", location, hint=_SYNTAX_HINT)


class _SpecYAMLError(MarkedYAMLError):
    """A YAML problem other than syntax (a cap exceeded, a value its tag cannot take), with its hint."""

    def __init__(self, problem: str, mark: Any, hint: str):
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


class _SpecComposer(Composer):
    """ruamel's composer, counting values and nesting against the caps as the parser produces them, and
    refusing an alias inside the value it names (`&a [*a]`), which would make a value that contains itself."""

    def __init__(self, loader: Any = None):
        super().__init__(loader)
        self.open_anchors: list[str] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        budget: ReadBudget = self.loader.budget
        if budget.nodes_left <= 0:
            raise _SpecYAMLError(
                f"the spec and its includes have more than {MAX_YAML_NODES:,} YAML values",
                event.start_mark,
                _SPLIT_HINT,
            )
        if self.depth >= MAX_YAML_DEPTH:
            raise _SpecYAMLError(
                f"lists and mappings are nested more than {MAX_YAML_DEPTH} levels deep",
                event.start_mark,
                "a spec needs only a few levels: check for unclosed `[` or `{`",
            )
        budget.nodes_left -= 1
        if isinstance(event, AliasEvent):
            if event.anchor in self.open_anchors:
                raise _SpecYAMLError(
                    f"`*{event.anchor}` is inside the value `&{event.anchor}` names: a value cannot contain itself",
                    event.start_mark,
                    f"refer to a value outside `&{event.anchor}`, or write this one out",
                )
            return super().compose_node(parent, index)
        self.open_anchors.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_anchors.pop()


def _located(construct: Callable[..., Any]) -> Callable[..., Any]:
    """`construct` (a ruamel constructor taking the node last), raising `_SpecYAMLError` at the node for
    any error that is not already a YAML error, also from the generator it may return."""

    @functools.wraps(construct)
    def wrapper(constructor: RoundTripConstructor, *args: Any) -> Any:
        node = args[-1]
        try:
            data = construct(constructor, *args)
        except YAMLError:
            raise
        except Exception as exc:  # whatever Python raises for a value becomes a located error
            raise _bad_value(node, exc) from None
        return _located_steps(data, node) if isinstance(data, GeneratorType) else data

    return wrapper


def _located_steps(steps: Iterator[Any], node: Node) -> Iterator[Any]:
    try:
        yield from steps
    except YAMLError:
        raise
    except Exception as exc:  # as in `_located`
        raise _bad_value(node, exc) from None


def _bad_value(node: Node, exc: Exception) -> _SpecYAMLError:
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    if isinstance(node, ScalarNode):
        written = repr(node.value[:40] + ("…" if len(node.value) > 40 else ""))
    elif isinstance(node, SequenceNode | MappingNode):
        written = f"a {node.id}"
    else:  # ruamel has no other kind of node
        written = "a value"
    reason = f": {str(exc).split(';')[0]}" if isinstance(exc, ValueError) else ""  # others say nothing to a spec author
    return _SpecYAMLError(f"YAML value: {written} cannot be read as {tag}{reason}", node.start_mark, _VALUE_HINT)


class _SpecConstructor(RoundTripConstructor):
    """Round-trip construction with every constructor wrapped by `_located`."""

    # ruamel declares these class-level tables without ClassVar, so mypy takes them for instance variables
    yaml_constructors: ClassVar[dict[Any, Any]] = {  # type: ignore[misc]
        tag: _located(f) for tag, f in RoundTripConstructor.yaml_constructors.items()
    }
    yaml_multi_constructors: ClassVar[dict[Any, Any]] = {  # type: ignore[misc]
        tag: _located(f) for tag, f in RoundTripConstructor.yaml_multi_constructors.items()
    }


class _SpecYAML(YAML):
    """Pure-Python round-trip YAML with the bounded composer and the located constructors."""

    def __init__(self, budget: ReadBudget):
        super().__init__(typ="rt", pure=True)
        self.Composer = _SpecComposer
        self.Constructor = _SpecConstructor
        self.budget = budget


def _plain_document(document: Any, file: Path) -> tuple[Any, SourceMap]:
    sources = SourceMap()
    sources.values[()] = Location(file, 1, 1)
    return _plain(document, (), file, sources), sources


def _plain(node: Any, path: FieldPath, file: Path, sources: SourceMap) -> Any:
    if len(sources.values) > MAX_EXPANDED_VALUES:
        raise SpecError(
            [
                SpecIssue(
                    f"the file expands to more than {MAX_EXPANDED_VALUES:,} values (nested YAML aliases?)",
                    Location(file, 1, 1),
                    hint="write the values out instead of nesting aliases",
                )
            ]
        )
    if isinstance(node, CommentedMap):
        mapping: dict[str, Any] = {}
        for key in node:
            child = path + (str(key),)
            sources.keys[child] = _mark(node, file, key, 0, sources.values[path])
            sources.values[child] = _mark(node, file, key, 2, sources.values[path])
            mapping[str(key)] = _plain(node[key], child, file, sources)
        return mapping
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for index, item in enumerate(node):
            sources.values[path + (index,)] = _mark(node, file, index, 0, sources.values[path])
            items.append(_plain(item, path + (index,), file, sources))
        return items
    return _plain_scalar(node)


def _plain_scalar(node: Any) -> Any:
    """ruamel's scalar types (kept for round-tripping: `ScalarInt`, `ScalarFloat`, an anchored `true` as
    `ScalarBoolean`, which is an int) as Python's; other values (dates, tagged scalars) as they are."""
    if isinstance(node, ScalarBoolean):
        return bool(node)
    for plain in (bool, str, int, float):
        if isinstance(node, plain):
            return plain(node)
    return node


def _mark(node: CommentedMap | CommentedSeq, file: Path, key: Any, offset: int, here: Location) -> Location:
    """Where a key (offset 0) or its value (offset 2) or a list item (key: its index) is. Entries ruamel
    kept no position for (merged keys `<<: *anchor`, items of `!!str [1]`) point at the mapping or
    list, or at `here`, where the mapping or list is written."""
    position = (node.lc.data or {}).get(key)
    if position is not None:
        return Location(file, position[offset] + 1, position[offset + 1] + 1)
    if node.lc.line is not None:
        return Location(file, node.lc.line + 1, node.lc.col + 1)
    return here
