"""Where each value of a spec came from: file, line and column per field path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from scenekit.errors import FieldPath, Location, format_field

_V = TypeVar("_V")


def _replace_subtree(
    table: dict[FieldPath, _V], prefix: FieldPath, source: dict[FieldPath, _V], source_prefix: FieldPath
) -> None:
    """Drop the entries of `table` under `prefix` and put there those of `source` under `source_prefix`."""
    for path in [p for p in table if p[: len(prefix)] == prefix]:
        del table[path]
    for path, value in source.items():
        if path[: len(source_prefix)] == source_prefix:
            table[prefix + path[len(source_prefix) :]] = value


@dataclass
class SourceMap:
    """Locations of values (and of their keys) by field path."""

    values: dict[FieldPath, Location] = field(default_factory=dict)
    keys: dict[FieldPath, Location] = field(default_factory=dict)
    written: dict[FieldPath, FieldPath] = field(default_factory=dict)

    def locate(self, path: FieldPath, *, key: bool = False) -> Location | None:
        """The location of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if key and end == len(path) and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return None

    def display(self, path: FieldPath) -> str:
        """The field path as the user wrote it (before includes were merged and loops expanded)."""
        return format_field(self.written_path(path))

    def written_path(self, path: FieldPath) -> FieldPath:
        """`path` translated back through include merging and loop expansion."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.written:
                return self.written[path[:end]] + path[end:]
        return path

    def replace_subtree(self, prefix: FieldPath, other: SourceMap, other_prefix: FieldPath = ()) -> None:
        """Drop what is under `prefix` and put there what `other` has under `other_prefix`."""
        _replace_subtree(self.values, prefix, other.values, other_prefix)
        _replace_subtree(self.keys, prefix, other.keys, other_prefix)
        _replace_subtree(self.written, prefix, other.written, other_prefix)
        origin = other.written_path(other_prefix)
        if origin != prefix:
            self.written[prefix] = origin
