"""Load a spec file: YAML with includes, templating, then validation against the pydantic models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenekit.errors import FieldPath, SpecError, SpecIssue
from scenekit.spec.models import SceneSpec
from scenekit.spec.paths import PathPolicy
from scenekit.spec.source import SourceMap
from scenekit.spec.templating import Templater
from scenekit.spec.validation import validated
from scenekit.spec.yaml_source import ReadBudget, read_yaml

_MERGED_MAPPINGS = ("vars", "defaults", "output", "models")


@dataclass
class LoadedSpec:
    """A validated spec, where its values came from, and the files it was read from."""

    spec: SceneSpec
    path: Path
    sources: SourceMap
    sha256: dict[Path, str] = field(default_factory=dict)
    """Every file read (the spec, then its includes) and the sha256 of the bytes read."""

    @property
    def files(self) -> list[Path]:
        return list(self.sha256)


def load_spec(path: Path, policy: PathPolicy, extra_vars: dict[str, Any] | None = None) -> LoadedSpec:
    """Read, merge includes, render templates and validate; raises SpecError with located issues."""
    path = path.resolve()
    files: dict[Path, str] = {}
    document, sources = _read_with_includes(path, policy, files, ReadBudget(), stack=())
    if not isinstance(document, dict):
        raise SpecError(
            [SpecIssue("a spec must be a YAML mapping with `scenekit: 1` and `clips:`", sources.locate(()))]
        )
    variables = document.get("vars", {})
    if not isinstance(variables, dict):
        raise SpecError([SpecIssue("`vars` must be a mapping of names to values", sources.locate(("vars",)), "vars")])
    variables = {**variables, **(extra_vars or {})}
    document["vars"] = variables
    templater = Templater(variables, sources)
    rendered = templater.render_document(document)
    if templater.issues:
        raise SpecError(templater.issues)
    rendered.pop("include", None)
    return LoadedSpec(validated(SceneSpec, rendered, sources), path, sources, files)


def _read_with_includes(
    path: Path, policy: PathPolicy, files: dict[Path, str], budget: ReadBudget, stack: tuple[Path, ...]
) -> tuple[Any, SourceMap]:
    """`path` with its includes merged in; all of them are charged to one `budget`."""
    document, sources, files[path] = read_yaml(path, budget)
    if not isinstance(document, dict) or "include" not in document:
        return document, sources
    includes = document["include"]
    if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
        raise SpecError(
            [_issue(sources, ("include",), "`include` must be a list of file paths", "include: [shared/style.yaml]")]
        )
    merged: dict[str, Any] = {}
    merged_sources = SourceMap()
    for index, written in enumerate(includes):
        try:
            included_path = policy.resolve(written, path.parent)
        except ValueError as exc:
            raise SpecError([_issue(sources, ("include", index), str(exc))]) from None
        if included_path in stack + (path,):
            chain = " -> ".join(p.name for p in (*stack, path, included_path))
            raise SpecError(
                [_issue(sources, ("include", index), f"include cycle: {chain}", "remove one of the includes")]
            )
        if not included_path.is_file():
            raise SpecError(
                [
                    _issue(
                        sources,
                        ("include", index),
                        f"included file not found: {written}",
                        "check the path; it is relative to this spec's folder",
                    )
                ]
            )
        included, included_sources = _read_with_includes(included_path, policy, files, budget, stack + (path,))
        if not isinstance(included, dict):
            raise SpecError([_issue(included_sources, (), f"included file {written} must be a YAML mapping")])
        included.pop("include", None)
        _merge(merged, merged_sources, included, included_sources)
    own = {key: value for key, value in document.items() if key != "include"}
    _merge(merged, merged_sources, own, sources)
    merged_sources.keys[("include",)] = sources.keys[("include",)]
    merged_sources.values[()] = sources.values[()]
    return merged, merged_sources


def _merge(base: dict[str, Any], base_sources: SourceMap, top: dict[str, Any], top_sources: SourceMap) -> None:
    """Merge `top` over `base`: mappings key by key, clips appended, anything else replaced."""
    for key, value in top.items():
        current = base.get(key)
        if key in _MERGED_MAPPINGS and isinstance(current, dict) and isinstance(value, dict):
            for name, item in value.items():
                current[name] = item
                base_sources.replace_subtree((key, name), top_sources, (key, name))
        elif key == "clips" and isinstance(current, list) and isinstance(value, list):
            offset = len(current)
            current.extend(value)
            for index in range(len(value)):
                base_sources.replace_subtree(("clips", offset + index), top_sources, ("clips", index))
        else:
            base[key] = value
            base_sources.replace_subtree((key,), top_sources, (key,))
        if (key,) in top_sources.keys:
            base_sources.keys[(key,)] = top_sources.keys[(key,)]


def _issue(sources: SourceMap, path: FieldPath, message: str, hint: str | None = None) -> SpecIssue:
    return SpecIssue(message, sources.locate(path), sources.display(path), hint)
