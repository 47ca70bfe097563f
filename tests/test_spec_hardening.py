"""Specs that once reached `main()`'s catch-all (a Python exception, exit 1) or ran for minutes: each is
now one located issue, found within seconds (issue 8, spec layer). The caps are in scenekit/spec/limits.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scenekit.cli import app
from scenekit.engine.session import RenderOptions, check
from scenekit.errors import SpecError, SpecIssue
from scenekit.spec.limits import MAX_SPEC_BYTES
from scenekit.spec.loader import load_spec
from scenekit.spec.models import Clip
from scenekit.spec.paths import PathPolicy
from scenekit.spec.schema import include_schema_text, schema_text
from scenekit.spec.yaml_source import ReadBudget, read_yaml

from conftest import Project

REPO = Path(__file__).resolve().parents[1]
HEAD = "scenekit: 1\ndefaults: {model: preview, size: 256x256, fps: 24}\n"


def _prompt_spec(expression: str, vars_line: str = "") -> str:
    """A one-clip spec whose prompt (line 5, or 6 with `vars_line`, column 13) is `expression`."""
    return HEAD + vars_line + f"clips:\n  - id: a\n    prompt: {json.dumps(expression)}\n    frames: 9\n"


def _only_issue(project: Project, text: str | None, *, through_timeline: bool = False) -> SpecIssue:
    """The one issue loading `text` (None: the spec as it is) gives; loading takes seconds (about 1 at most, unloaded)."""
    spec = project.write(text) if text is not None else project.spec
    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        if through_timeline:
            check(spec, RenderOptions(cache_dir=project.cache))
        else:
            load_spec(spec, PathPolicy(project.root))
    assert time.perf_counter() - started < 10
    issues = caught.value.issues
    assert len(issues) == 1, [issue.render() for issue in issues]
    assert issues[0].location is not None
    return issues[0]


def _at(issue: SpecIssue) -> tuple[str, int, int]:
    assert issue.location is not None
    return issue.location.file.name, issue.location.line, issue.location.column


# Whatever Python raises while a template renders is an issue at the string's field.
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError: division by zero"),
        ("{{ 1 + 'a' }}", "TypeError: unsupported operand"),
        ("{{ cycler() }}", "RuntimeError: at least one item"),
        ("{{ range(1, 10, 0)|list }}", "range() arg 3 must not be zero"),
        ("{{ 'abc'|truncate(1) }}", "AssertionError"),
        ("{% include 'x' %}", "no loader"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
        ("{{ shots.append(1) }}", "unsafe"),
    ],
)
def test_a_template_that_raises_is_an_issue_at_its_field(project: Project, expression: str, message: str):
    issue = _only_issue(project, _prompt_spec(expression, "vars: {shots: [a]}\n"))
    assert _at(issue) == ("scene.yaml", 6, 13)
    assert issue.field == "clips[0].prompt"
    assert issue.message.startswith("template: ") and message in issue.message
    assert issue.hint


def test_a_variable_shadowing_a_template_function_is_an_issue(project: Project):
    issue = _only_issue(project, _prompt_spec("{{ range(3)|list }}", "vars: {range: 5}\n"))
    assert (issue.field, _at(issue)) == ("clips[0].prompt", ("scene.yaml", 6, 13))
    assert "'int' object is not callable" in issue.message


def test_a_loop_expression_that_raises_is_an_issue_at_for(project: Project):
    issue = _only_issue(project, HEAD + "clips:\n  - for: i in 1/0\n    clip: {id: a, prompt: x, frames: 9}\n")
    assert (issue.field, _at(issue)) == ("clips[0].for", ("scene.yaml", 4, 10))
    assert issue.message == "cannot loop over `1/0`: ZeroDivisionError: division by zero"


# Templates that would run for minutes or take gigabytes stop at a cap, which the message names.
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("{{ 'a' * 10**9 }}", "would make more than 1,000,000 characters"),
        ("{{ 7 ** (10**9) }}", "more than 4,000 digits"),
        ("{{ 10 ** 5000 }}", "more than 4,000 digits"),
        ("{{ (10**3000) * (10**3000) }}", "more than 4,000 digits"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "more than 1,000,000 operations",
        ),
        (
            "{% for i in range(99999) %}{% for j in shots %}{% for k in shots %}{% endfor %}{% endfor %}{% endfor %}",
            "operations",
        ),
        ("{{ 'a'.center(10**9) }}", "`center` could make about 1,000,000,000 characters"),
        ("{{ 'a'|indent(10**9, true) }}", "`|indent` could make"),
        ("{% set a = 'a' * 1000000 %}{{ a.replace('a', a) }}", "`replace` could make"),
        ("{% set a = ['a' * 1000000] * 1000 %}{{ a|join }}", "more than 1,000,000 characters"),
        ("{{ '{:>999999999}'.format(1) }}", "format width or precision of 999999999"),
        ("{{ '%0999999999d' % 1 }}", "format width or precision of 999999999"),
        ("{{ '%0999999999d'|format(1) }}", "format width or precision of 999999999"),
        ("{{ '%*d' % (10**9, 1) }}", "taken from an argument"),
        (
            "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "value of more than 1,000,000",
        ),
        ("{% for i in range(2000) %}{{ 'a' * 1000 }}{% endfor %}", "rendered string is longer than 1,000,000"),
        (
            "{% set ns = namespace(s=[]) %}{% for i in range(3000) %}{% set ns.s = ns.s + [i] %}{% endfor %}",
            "operations",
        ),
    ],
)
def test_a_template_over_a_cap_stops_quickly_with_an_issue(project: Project, expression: str, message: str):
    vars_line = "vars: {shots: [" + ", ".join(["x"] * 300) + "]}\n"
    issue = _only_issue(project, _prompt_spec(expression, vars_line))
    assert (issue.field, _at(issue)) == ("clips[0].prompt", ("scene.yaml", 6, 13))
    assert message in issue.message, issue.message
    assert issue.hint


def test_all_templates_of_a_spec_share_one_budget(project: Project):
    loop = "  - for: i in range(100)\n    clip: {id: 'c{{ i }}', prompt: \"{{ 'a' * 400000 }}\", frames: 9}\n"
    issue = _only_issue(project, HEAD + "clips:\n" + loop)
    assert (issue.field, _at(issue)) == ("clips[0].clip.prompt", ("scene.yaml", 5, 36))
    assert "the spec's templates made more than 20,000,000 characters in all" in issue.message


def test_template_syntax_is_counted_before_it_is_compiled(project: Project):
    issue = _only_issue(project, _prompt_spec("{{ x }}" * 7000, "vars: {x: 1}\n"))
    assert (issue.field, _at(issue)) == ("clips[0].prompt", ("scene.yaml", 6, 13))
    assert "more than 20,000 pieces of template syntax" in issue.message


def test_templates_may_still_format_large_numbers(project: Project):
    spec = project.write(_prompt_spec("{{ '%012d'|format(2**40) }} {{ '{:>12}'.format(2**62 + 1) }} {{ 2**62 * 1 }}"))
    loaded = load_spec(spec, PathPolicy(project.root))
    assert loaded.spec.clips[0].prompt == f"{2**40:012d} {2**62 + 1:>12} {2**62}"


def test_loops_together_make_at_most_1000_clips(project: Project):
    loops = "".join(
        f"  - for: i in range(1000)\n    clip: {{id: 'c{k}-{{{{ i }}}}', prompt: x, frames: 9}}\n" for k in range(100)
    )
    issue = _only_issue(project, HEAD + "clips:\n" + loops)
    assert (issue.field, _at(issue)) == ("clips[1].for", ("scene.yaml", 6, 10))
    assert (
        issue.message
        == "the loop makes 1,000 clips and 1,000 come before it: a spec may have at most 1,000 clips (written and generated by loops)"
    )


def test_one_loop_over_a_long_range_stops_counting_past_the_cap(project: Project):
    issue = _only_issue(
        project, HEAD + "clips:\n  - for: i in range(100000)\n    clip: {id: 'c{{ i }}', prompt: x, frames: 9}\n"
    )
    assert issue.message.startswith("the loop makes more than 1,000 clips")


# YAML: values their tags cannot take, nesting and size caps.
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!float x", "'x' cannot be read as !!float: could not convert"),
        ("!!int 1.5", "'1.5' cannot be read as !!int"),
        ("!!omap x", "'x' cannot be read as !!omap"),
        ("!!set x", "'x' cannot be read as !!set"),
        ("!!bool x", "'x' cannot be read as !!bool"),
        ("!!binary x", "YAML value: failed to decode base64"),
        ("1" * 5000, "cannot be read as !!int: Exceeds the limit (4300 digits)"),
    ],
)
def test_a_value_its_tag_cannot_take_is_an_issue_at_the_value(project: Project, value: str, message: str):
    issue = _only_issue(project, f"name: x\nscenekit: {value}\n")
    assert _at(issue) == ("scene.yaml", 2, 11)
    assert message in issue.message
    assert issue.hint


def test_a_character_yaml_does_not_allow_is_located(project: Project):
    issue = _only_issue(project, "scenekit: 1\nname: a\x00b\n")
    assert _at(issue) == ("scene.yaml", 2, 8)
    assert "a character YAML does not allow (U+0000)" in issue.message


@pytest.mark.parametrize(
    ("text", "column"), [("- &a [*a]\n", 7), ("scenekit: 1\nclips: [&c {id: a, conditioning: [*c]}]\n", 35)]
)
def test_an_alias_inside_the_value_it_names_is_an_issue(project: Project, text: str, column: int):
    issue = _only_issue(project, text)
    assert _at(issue)[2] == column
    assert "a value cannot contain itself" in issue.message


def test_deep_nesting_stops_at_64_levels(project: Project):
    issue = _only_issue(project, "scenekit: " + "[" * 500 + "]" * 500 + "\n")
    assert _at(issue) == ("scene.yaml", 1, 10 + 64)  # the mapping is level 1: its 64th `[` is level 65
    assert "nested more than 64 levels" in issue.message


def test_a_list_tagged_as_a_string_is_located(project: Project):
    issue = _only_issue(project, "scenekit: 1\nclips: !!str [1]\n")
    assert _at(issue) == ("scene.yaml", 2, 8)


def test_the_node_cap_applies_while_parsing(tmp_path: Path):
    spec = tmp_path / "scene.yaml"
    spec.write_text("clips: [" + ", ".join(["1"] * 1000) + "]\n")
    with pytest.raises(SpecError) as caught:
        read_yaml(spec, ReadBudget(nodes_left=100))
    assert "more than 50,000 YAML values" in caught.value.issues[0].message
    assert _at(caught.value.issues[0]) == ("scene.yaml", 1, 1 + len("clips: [") + 3 * 97)


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(project: Project):
    spec = project.write(HEAD)
    with spec.open("r+b") as handle:
        handle.truncate(5 << 30)  # a sparse 5 GB file: reading and parsing it would take hours
    issue = _only_issue(project, None)
    assert "scene.yaml is too large (5,368,709,120 bytes)" in issue.message
    assert _at(issue) == ("scene.yaml", 1, 1)


def test_a_spec_and_its_includes_share_the_size_cap(project: Project):
    comment = "#" + "x" * (MAX_SPEC_BYTES // 2) + "\n"
    project.write(comment + "vars: {a: 1}\n", "shared/one.yaml")
    project.write(comment + "vars: {b: 1}\n", "shared/two.yaml")
    issue = _only_issue(
        project, HEAD + "include: [shared/one.yaml, shared/two.yaml]\nclips: [{id: a, prompt: x, frames: 9}]\n"
    )
    assert _at(issue) == ("two.yaml", 1, 1)
    assert f"at most {MAX_SPEC_BYTES:,} bytes together" in issue.message


# Paths the system cannot look up (ENAMETOOLONG, NUL) are issues at the path.
LONG = "a" * 300


@pytest.mark.parametrize(
    ("entry", "field", "line", "column"),
    [
        (f"include: [{LONG}.yaml]\n", "include[0]", 3, 11),
        ("include: ['a\\0b.yaml']\n", "include[0]", 3, 11),
        (f"output: {{file: {LONG}.mp4}}\n", "output.file", 3, 16),
        (
            f"clips:\n  - {{id: b, prompt: x, frames: 9, conditioning: [{{image: {LONG}.png}}]}}\n",
            "clips[1].conditioning[0].image",
            5,
            58,
        ),
        (
            f"clips:\n  - {{id: b, prompt: x, frames: 9, conditioning: [{{video: {LONG}.mp4}}]}}\n",
            "clips[1].conditioning[0].video",
            5,
            58,
        ),
        (f"models: {{preview: {LONG}}}\n", "models.preview", 3, 19),
    ],
)
def test_a_path_the_system_cannot_look_up_is_an_issue_at_the_path(
    project: Project, entry: str, field: str, line: int, column: int
):
    text = HEAD + entry + "clips:\n  - {id: a, prompt: x, frames: 9}\n"
    if entry.startswith("clips:"):
        text = HEAD + "clips:\n  - {id: a, prompt: x, frames: 9}\n" + entry.removeprefix("clips:\n")
    issue = _only_issue(project, text, through_timeline=True)
    assert (issue.field, _at(issue)) == (field, ("scene.yaml", line, column))


# The command line: a bad --var or a template error exits 2 with a message, never a traceback.
def test_a_bad_var_exits_2_naming_the_var():
    result = CliRunner().invoke(app, ["validate", str(REPO / "specs/examples/lighthouse.yaml"), "--var", "x=[unclosed"])
    assert result.exit_code == 2, result.output
    assert "error: --var x: YAML syntax:" in result.stderr
    assert "Traceback" not in result.output


def test_a_template_error_exits_2(project: Project):
    spec = project.write(_prompt_spec("{{ 1/0 }}"))
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    assert "scene.yaml:5:13: error: clips[0].prompt: template: ZeroDivisionError: division by zero" in result.stderr


# Editors: the schema names a misspelt key, and included files have their own schema.
def test_the_schema_tells_clips_from_loops_by_for():
    schema = json.loads(schema_text())
    items = schema["properties"]["clips"]["items"]
    assert "oneOf" not in items and "anyOf" not in items
    assert items == {
        "if": {"type": "object", "required": ["for"]},
        "then": {"$ref": "#/$defs/ClipLoop"},
        "else": {"$ref": "#/$defs/Clip"},
    }
    assert schema["$defs"]["Clip"]["additionalProperties"] is False
    template = schema["$defs"]["ClipLoop"]["properties"]["clip"]
    assert template["additionalProperties"] is False
    assert set(template["properties"]) == {field.alias or name for name, field in Clip.model_fields.items()}


def test_the_include_schema_requires_nothing_and_is_up_to_date():
    schema = json.loads(include_schema_text())
    assert "required" not in schema and "minItems" not in schema["properties"]["clips"]
    assert set(schema["properties"]) == set(json.loads(schema_text())["properties"])
    assert (REPO / "schemas" / "include.schema.json").read_text() == include_schema_text(), "run `scenekit schema`"
