"""Turn pydantic validation errors into located, actionable spec issues."""

from __future__ import annotations

import difflib
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from scenekit.errors import FieldPath, SpecError, SpecIssue
from scenekit.spec.source import SourceMap

_UNION_TAGS = {"clip", "loop"}


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any, sources: SourceMap) -> M:
    """`data` validated as `model`; raises SpecError with one located issue per error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = _drop_missing_explained_by_typos(model, exc.errors(include_url=False))
        raise SpecError(list(dict.fromkeys(_issue(model, error, sources) for error in errors))) from None


def _drop_missing_explained_by_typos(model: type[BaseModel], errors: list[Any]) -> list[Any]:
    """A misspelt key (`promt`) also makes the real one (`prompt`) missing: report only the typo."""
    typos = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            path = _clean_path(tuple(error["loc"]))
            allowed = _allowed_keys(model, path[:-1])
            for close in difflib.get_close_matches(str(path[-1]), sorted(allowed), n=1, cutoff=0.6):
                typos.add(path[:-1] + (close,))
    return [e for e in errors if not (e["type"] == "missing" and _clean_path(tuple(e["loc"])) in typos)]


def _issue(model: type[BaseModel], error: Any, sources: SourceMap) -> SpecIssue:
    path = _clean_path(tuple(error["loc"]))
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = sorted(_allowed_keys(model, path[:-1]))
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else f"remove it; allowed here: {', '.join(allowed)}"
        return SpecIssue(f"unknown key `{path[-1]}`", sources.locate(path, key=True), sources.display(path), hint)
    if kind == "missing":
        return SpecIssue(
            f"missing required key `{path[-1]}`",
            sources.locate(path[:-1]),
            sources.display(path),
            f"add `{path[-1]}:` here",
        )
    value = error.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float | bool) and kind != "value_error" else ""
    return SpecIssue(message + shown, sources.locate(path), sources.display(path), _hint_for(kind, error, path))


def _clean_path(loc: FieldPath) -> FieldPath:
    """Drop pydantic's union tags, e.g. clips.0.clip.prompt -> clips.0.prompt."""
    cleaned: list[str | int] = []
    for index, part in enumerate(loc):
        if part in _UNION_TAGS and index >= 2 and loc[index - 2] == "clips" and isinstance(loc[index - 1], int):
            continue
        cleaned.append(part)
    return tuple(cleaned)


def _hint_for(kind: str, error: Any, path: FieldPath) -> str | None:
    if path and path[-1] == "step_cache":
        return "write a threshold from 0 to 1 (e.g. 0.05; higher skips more steps), or `off` for every step in full"
    if kind == "literal_error":
        return f"use one of: {error.get('ctx', {}).get('expected', '')}"
    if kind == "string_pattern_mismatch" and path[-1] == "id":
        return "ids are lower-case letters, digits, '-' and '_', starting with a letter or digit"
    if kind == "string_pattern_mismatch" and path[-1] == "name":
        return "a name is letters, digits, '.', '-' and '_', starting with a letter or digit (no spaces)"
    if kind == "string_pattern_mismatch" and path[-1] == "for":
        return "write `for: NAME in EXPRESSION`, e.g. for: shot in shots"
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return "write a whole number"
    if kind in {"float_parsing", "float_type"}:
        return "write a number"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return "change the value to be within the allowed range"
    if kind in {"list_type", "dict_type", "model_type", "model_attributes_type"}:
        return "check the indentation and the kind of value (list with '- ' items, or key: value mapping)"
    return None


def _allowed_keys(model: type[BaseModel], path: FieldPath) -> set[str]:
    """Field names (and aliases) of the model found at `path` inside `model`."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        inner = _model_in(current)
        fields = inner.model_fields if inner is not None else {}
        match = next((f for name, f in fields.items() if part in (name, f.alias)), None)
        if match is None:
            return set()
        current = match.annotation
    target = _model_in(current)
    if target is None:
        return set()
    return {f.alias or name for name, f in target.model_fields.items()}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside an annotation such as `list[Clip] | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
