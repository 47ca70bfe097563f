"""Fuzzing the spec layer: specs mutated from the examples and the broken-spec corpus (their YAML bytes;
their keys, values and types; template expressions and raw YAML such as `!!int 1.5` put in place of
values) either check or fail with a SpecError whose every issue is located (file, line, column); never
any other exception.

The runs are derandomized (the same examples every time) and bounded to a few seconds; set
SCENEKIT_FUZZ_EXAMPLES to run more, e.g. 5000, with fresh random examples.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from scenekit.engine.session import RenderOptions, check
from scenekit.errors import FieldPath, SpecError
from scenekit.spec.yaml_source import read_yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
_EXAMPLES = int(os.environ.get("SCENEKIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXAMPLES or 150,
    deadline=None,
    derandomize=not _EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TEMPLATES = [
    "{{ 1/0 }}",
    "{{ 1 + 'a' }}",
    "{{ cycler() }}",
    "{{ range(1, 10, 0)|list }}",
    "{{ 'abc'|truncate(1) }}",
    "{% include 'x' %}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{{ 10 ** 5000 }}",
    "{{ 'a' * 10**9 }}",
    "{{ 7 ** (10**9) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ nope }}",
    "{{ ''.__class__ }}",
    "{{ style",
    "{% for %}",
    "{{ style|upper }}",
    "{{ loop.index }}",
    "{{ '%*d' % (3, 1) }}",
    "{{ '{:>99999999}'.format(1) }}",
    "{{ range(3) }}",
    "{{ {}.x.y }}",
    "{{ [1][5] }}",
    "{{ 'x' ~ 2 ** 64 }}",
    "{% set x = [1] * 10 %}{{ x|sum }}",
    "{{ lipsum() }}",
    "{{ 9.9e999 }}",
    "{{ 1e308 * 10 }}",
]
YAML_PIECES = [
    ":",
    " ",
    "\n",
    "\t",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "&a ",
    "*a",
    "!!float ",
    "!!int ",
    "!!omap ",
    "!!str ",
    "!!binary ",
    "!!set ",
    "? ",
    "|\n",
    ">\n",
    "'",
    '"',
    "<<: ",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "\\x00",
    "\ufeff",
    "1" * 5000,
    "[" * 100,
    "{{ ",
    " }}",
    "{% ",
    "9" * 30,
    ".nan",
    "-.inf",
    "0x1F",
    "0o17",
    "1_000",
    "~",
    "null",
    "2001-12-14",
    "=",
    "\u2028",
    "\ud7ff",
]
RAW_VALUES = [
    "!!float x",
    "!!int 1.5",
    "!!omap x",
    "!!bool x",
    "!!set x",
    "!!binary x",
    "!!timestamp x",
    "!!str [1]",
    "!!map [1]",
    "!!seq {a: 1}",
    "!!null x",
    "!!pairs x",
    "!!float 1e999",
    "1" * 5000,
    "[" * 80 + "]" * 80,
    "*nowhere",
    "&a [*a]",
    "!custom x",
    "!!python/name:os.system x",
    "{? [a, b]: 1}",
    "[!!str {a: 1}]",
    "2001-12-14",
    ".nan",
    "0o777",
]
"""YAML written as it is, in place of a value (what a Python value dumped to YAML cannot be)."""
ODD_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(TEMPLATES),
    st.sampled_from(["5s", "0s", "1e9s", "12f", "-1", "768x512", "0x0", "30000/1001", "a" * 300]),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.sampled_from(["image", "frame", "type", "x"]), st.integers(0, 3), max_size=2),
)


def _seeds() -> list[Path]:
    seeds = sorted((REPO / "specs" / "examples").glob("*.yaml")) + sorted((TESTS / "corpus" / "broken").glob("*.yaml"))
    return [p for p in seeds if p.name != "63-not-utf8.yaml"]


SEEDS = _seeds()


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project holding copies of the examples and the corpus, so the mutants find their includes and assets."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "specs" / "examples", root / "specs" / "examples")
    shutil.copytree(TESTS / "corpus", root / "tests" / "corpus")
    (root / "scenekit.toml").write_text("")
    return root


def _copy_of(seed: Path, root: Path) -> Path:
    return root / seed.relative_to(REPO)


def _assert_checks_or_fails_located(spec: Path) -> None:
    """`check` succeeds or raises a SpecError whose issues all say where (any other exception fails the test)."""
    try:
        check(spec, RenderOptions(cache_dir=spec.parent / ".cache"))
    except SpecError as exc:
        assert exc.issues, "a SpecError without issues"
        for issue in exc.issues:
            assert issue.location is not None, f"an issue without a location: {issue.render()}"
            assert issue.location.line >= 1 and issue.location.column >= 1, issue.render()
            assert issue.location.file.is_absolute(), issue.render()


@FUZZ
@given(data=st.data())
def test_mutated_yaml_text_checks_or_fails_located(playground: Path, data: st.DataObject):
    seed = data.draw(st.sampled_from(SEEDS), label="seed")
    text = seed.read_bytes()
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(text)), label="at")
        cut = data.draw(st.integers(0, 8), label="cut")
        piece = data.draw(st.one_of(st.sampled_from(YAML_PIECES), st.text(max_size=4)), label="piece")
        text = text[:at] + piece.encode("utf-8", "surrogatepass") + text[at + cut :]
    spec = _copy_of(seed, playground).with_name("fuzzed.yaml")
    spec.write_bytes(text)
    _assert_checks_or_fails_located(spec)


@FUZZ
@given(data=st.data())
def test_mutated_spec_values_check_or_fail_located(playground: Path, data: st.DataObject):
    seed = data.draw(st.sampled_from(SEEDS), label="seed")
    try:
        document = read_yaml(seed)[0]
    except SpecError:
        document = {}
    raw: list[str] = []
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        document = _mutated(document, data, raw)
    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(document, stream)
    text = stream.getvalue()
    for index, written in enumerate(raw):
        text = text.replace(f"RAW{index}X", written)
    spec = _copy_of(seed, playground).with_name("fuzzed.yaml")
    spec.write_text(text)
    _assert_checks_or_fails_located(spec)


def _mutated(document: Any, data: st.DataObject, raw: list[str]) -> Any:
    """`document` with one value replaced (by a Python value, a template, or YAML written as it is: a
    placeholder `RAWnX` for `raw[n]`), or one key renamed, removed or added."""
    paths = list(_paths(document, ()))
    path = data.draw(st.sampled_from(paths), label="path")
    kind = data.draw(st.sampled_from(["value", "template", "raw", "rename", "remove", "add"]), label="kind")
    if kind == "raw":
        raw.append(data.draw(st.sampled_from(RAW_VALUES), label="raw"))
        return _replaced(document, path, f"RAW{len(raw) - 1}X")
    if path == () or kind in ("value", "template"):
        value = data.draw(st.sampled_from(TEMPLATES) if kind == "template" else ODD_VALUES, label="value")
        return _replaced(document, path, value)
    parent = _get(document, path[:-1])
    if kind == "add" and isinstance(parent, dict):
        parent[
            data.draw(st.sampled_from(["promt", "for", "clip", "transition", "include", "vars", "x"]), label="key")
        ] = 1
    elif kind == "rename" and isinstance(parent, dict):
        parent[str(path[-1])[:-1] or "x"] = parent.pop(path[-1])
    elif kind == "remove" and isinstance(parent, dict | list):
        del parent[path[-1]]
    return document


def _paths(value: Any, path: FieldPath) -> Any:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, path + (key,))


def _get(document: Any, path: FieldPath) -> Any:
    for part in path:
        document = document[part]
    return document


def _replaced(document: Any, path: FieldPath, value: Any) -> Any:
    if not path:
        return value
    _get(document, path[:-1])[path[-1]] = value
    return document


def test_the_command_line_exits_2_on_a_template_bomb(tmp_path: Path):
    """The console script path, as a user runs it: a located error and exit 2 within seconds, no traceback."""
    (tmp_path / "scenekit.toml").write_text("")
    spec = tmp_path / "bomb.yaml"
    spec.write_text("scenekit: 1\nclips:\n  - {id: a, prompt: \"{{ 'a' * 10**9 }}\", frames: 9}\n")
    result = subprocess.run(
        [sys.executable, "-m", "scenekit", "validate", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "bomb.yaml:3:21: error: clips[0].prompt: template: repeating a value" in result.stderr
    assert "Traceback" not in result.stderr
