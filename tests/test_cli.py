"""The command line: exit codes, plan JSON, graph export, cache commands, schema freshness."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from conftest import Project, read_video
from scenekit.cli import app
from scenekit.spec.schema import schema_text

REPO = Path(__file__).resolve().parents[1]
SCENE = """
    scenekit: 1
    defaults: {size: 64x64, fps: 8}
    clips:
      - {id: one, prompt: "first", frames: 9}
      - {id: two, prompt: "second", frames: 9, continue: one, overlap: 9}
    output: {file: out.mp4, preset: ultrafast}
"""


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_schema_file_is_up_to_date():
    assert (REPO / "schemas" / "scene.schema.json").read_text() == schema_text(), "run `scenekit schema`"


def test_plan_json_lists_every_node_with_status_and_reason(project: Project):
    project.write(SCENE)
    result = run("plan", project.spec, "--json", "--cache-dir", project.cache)
    assert result.exit_code == 0, result.output
    nodes = json.loads(result.output)["nodes"]
    assert [n["id"] for n in nodes] == ["one/generate", "one/segment", "two/generate", "two/segment", "stitch"]
    assert all(set(n) == {"id", "op", "clip", "key", "status", "reason"} for n in nodes)
    assert all(n["status"] == "run" and n["reason"] == "new" for n in nodes)

    assert run("render", project.spec, "--cache-dir", project.cache).exit_code == 0
    nodes = json.loads(run("plan", project.spec, "--json", "--cache-dir", project.cache).output)["nodes"]
    assert all(n["status"] == "cached" for n in nodes)


def test_render_writes_output_and_manifest(project: Project):
    project.write(SCENE)
    result = run("render", project.spec, "--cache-dir", project.cache)
    assert result.exit_code == 0, result.output
    assert (project.root / "out.mp4").is_file()
    assert (project.root / "out.manifest.json").is_file()


def test_graph_prints_mermaid_and_dot(project: Project):
    project.write(SCENE)
    mermaid = run("graph", project.spec, "--cache-dir", project.cache).output
    assert mermaid.startswith("flowchart LR") and "n_one_generate --> n_two_generate" in mermaid
    dot = run("graph", project.spec, "--format", "dot", "--cache-dir", project.cache).output
    assert dot.startswith("digraph") and '"two/generate" -> "stitch";' in dot


def test_cache_info_and_prune(project: Project):
    project.write(SCENE)
    run("render", project.spec, "--cache-dir", project.cache)
    info = run("cache", "info", "--cache-dir", project.cache)
    assert info.exit_code == 0 and "5 entries" in info.output
    kept = run("cache", "prune", "--all", "--keep", project.spec, "--cache-dir", project.cache)
    assert "removed 0 entries" in kept.output
    pruned = run("cache", "prune", "--all", "--cache-dir", project.cache)
    assert "removed 5 entries" in pruned.output
    assert "0 entries" in run("cache", "info", "--cache-dir", project.cache).output


def test_invalid_spec_exits_2_without_traceback(project: Project):
    project.write(SCENE.replace("prompt: \"second\"", "promt: \"second\""))
    result = run("render", project.spec, "--cache-dir", project.cache)
    assert result.exit_code == 2
    assert "scene.yaml:5:" in result.output and "did you mean `prompt`?" in result.output
    assert "Traceback" not in result.output
    assert not project.cache.exists() or not list(project.cache.glob("objects/*/*"))


def test_unknown_model_override_is_a_spec_error(project: Project):
    project.write(SCENE)
    result = run("validate", project.spec, "--model", "ltx9")
    assert result.exit_code == 2 and "unknown model profile `ltx9`" in result.output


def test_profiles_lists_preview():
    result = run("profiles")
    assert result.exit_code == 0 and "preview" in result.output


def test_size_renders_every_clip_at_another_size(project: Project):
    project.write(SCENE)
    result = run("render", project.spec, "--cache-dir", project.cache, "--size", "128x96")
    assert result.exit_code == 0, result.output
    frames, _, _ = read_video(project.root / "out.mp4")
    assert frames.shape[1:] == (96, 128, 3)
    assert json.loads(run("plan", project.spec, "--json", "--cache-dir", project.cache).output)["nodes"][0]["status"] == "run"


def test_a_bad_size_is_exit_2_with_what_to_write(project: Project):
    project.write(SCENE)
    written = run("render", project.spec, "--cache-dir", project.cache, "--size", "128by96")
    assert written.exit_code == 2 and "--size" in written.output and "WIDTHxHEIGHT" in written.output
    odd = run("validate", project.spec, "--size", "100x96")
    assert odd.exit_code == 2 and "size 100x96 (from --size) is not a multiple of 32" in odd.output
