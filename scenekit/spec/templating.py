"""Jinja2 templating of spec strings, sandboxed, with undefined variables as errors."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from scenekit.errors import FieldPath, SpecIssue
from scenekit.spec.source import SourceMap

MAX_GENERATED_CLIPS = 1000
_LOOP = re.compile(r"^\s*([A-Za-z_]\w*)\s+in\s+(.+?)\s*$")
_TEMPLATED_SECTIONS = ("name", "description", "defaults", "clips", "output")


def make_environment() -> SandboxedEnvironment:
    """The sandbox every spec string is rendered in."""
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class Templater:
    """Renders the strings of a merged spec document and expands clip loops."""

    def __init__(self, variables: Mapping[str, Any], sources: SourceMap):
        self.env = make_environment()
        self.variables = dict(variables)
        self.sources = sources
        self.issues: list[SpecIssue] = []

    def render_document(self, document: dict[str, Any]) -> dict[str, Any]:
        """A copy of `document` with every templated string rendered and loops expanded."""
        result = dict(document)
        for section in _TEMPLATED_SECTIONS:
            if section not in document:
                continue
            if section == "clips" and isinstance(document["clips"], list):
                result["clips"] = self._expand_clips(document["clips"])
            else:
                result[section] = self._render(document[section], (section,), self.variables)
        return result

    def _render(self, value: Any, path: FieldPath, context: Mapping[str, Any]) -> Any:
        if isinstance(value, str):
            return self._render_string(value, path, context)
        if isinstance(value, dict):
            return {key: self._render(item, path + (key,), context) for key, item in value.items()}
        if isinstance(value, list):
            return [self._render(item, path + (index,), context) for index, item in enumerate(value)]
        return value

    def _render_string(self, text: str, path: FieldPath, context: Mapping[str, Any]) -> str:
        if "{{" not in text and "{%" not in text:
            return text
        try:
            return self.env.from_string(text).render(context)
        except UndefinedError as exc:
            self._fail(path, f"template: {exc.message}", _undefined_hint(exc.message, context))
        except TemplateError as exc:
            self._fail(path, f"template: {exc.message or exc}", "fix the Jinja2 expression in this string")
        return text

    def _expand_clips(self, entries: list[Any]) -> list[Any]:
        clips: list[Any] = []
        new_sources = SourceMap()
        for table, new_table in ((self.sources.values, new_sources.values), (self.sources.keys, new_sources.keys)):
            if ("clips",) in table:
                new_table[("clips",)] = table[("clips",)]
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and "for" in entry:
                generated = self._expand_loop(entry, ("clips", index))
                for clip in generated:
                    new_sources.replace_subtree(("clips", len(clips)), self.sources, ("clips", index, "clip"))
                    clips.append(clip)
            else:
                new_sources.replace_subtree(("clips", len(clips)), self.sources, ("clips", index))
                clips.append(self._render(entry, ("clips", index), self.variables))
        self.sources.replace_subtree(("clips",), new_sources, ("clips",))
        return clips

    def _expand_loop(self, entry: dict[str, Any], path: FieldPath) -> list[Any]:
        extra = set(entry) - {"for", "clip"}
        if extra:
            self._fail(path + (sorted(extra)[0],), f"unknown key `{sorted(extra)[0]}` in a clip loop", "a loop has only `for` and `clip`", key=True)
            return []
        spec, template = entry.get("for"), entry.get("clip")
        match = _LOOP.match(spec) if isinstance(spec, str) else None
        if not match:
            self._fail(path + ("for",), "a loop needs `for: NAME in EXPRESSION`", "e.g. for: shot in shots")
            return []
        if not isinstance(template, dict):
            self._fail(path + ("clip",), "a loop needs a `clip:` mapping to repeat", "add clip: {id: 'shot-{{ loop.index }}', ...}")
            return []
        name, expression = match.groups()
        try:
            items = list(self.env.compile_expression(expression, undefined_to_none=False)(**self.variables))
        except UndefinedError as exc:
            self._fail(path + ("for",), f"template: {exc.message}", _undefined_hint(exc.message, self.variables))
            return []
        except (TemplateError, TypeError) as exc:
            self._fail(path + ("for",), f"cannot loop over `{expression}`: {exc}", "loop over a list or range(...) from `vars`")
            return []
        if len(items) > MAX_GENERATED_CLIPS:
            self._fail(path + ("for",), f"the loop makes {len(items)} clips; at most {MAX_GENERATED_CLIPS} are allowed")
            return []
        clips = []
        for position, item in enumerate(items):
            loop = {"index": position + 1, "index0": position, "first": position == 0,
                    "last": position == len(items) - 1, "length": len(items)}
            clips.append(self._render(template, path + ("clip",), {**self.variables, name: item, "loop": loop}))
        return clips

    def _fail(self, path: FieldPath, message: str, hint: str | None = None, *, key: bool = False) -> None:
        issue = SpecIssue(message, self.sources.locate(path, key=key), self.sources.display(path), hint)
        if issue not in self.issues:
            self.issues.append(issue)


def _undefined_hint(message: str | None, context: Mapping[str, Any]) -> str:
    match = re.search(r"'([^']+)' is undefined", message or "")
    names = [n for n in context if n != "loop"]
    if match:
        close = difflib.get_close_matches(match[1], names, n=1)
        if close:
            return f"did you mean `{close[0]}`? (defined: {', '.join(sorted(names)) or 'none'})"
    return f"define it under `vars:` (defined: {', '.join(sorted(names)) or 'none'})"
