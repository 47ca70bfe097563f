"""The command line: exit codes, plan JSON, graph export, cache commands, schema freshness, help, output names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from scenekit import __version__
from scenekit.cli import app
from scenekit.profiles import available_profiles
from scenekit.spec.schema import schema_text

from conftest import Project, read_video

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
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="scenekit")


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
    project.write(SCENE.replace('prompt: "second"', 'promt: "second"'))
    result = run("render", project.spec, "--cache-dir", project.cache)
    assert result.exit_code == 2
    assert "scene.yaml:5:" in result.output and "did you mean `prompt`?" in result.output
    assert "Traceback" not in result.output
    assert not project.cache.exists() or not list(project.cache.glob("objects/*/*"))


def test_unknown_model_override_is_a_spec_error(project: Project):
    project.write(SCENE)
    result = run("validate", project.spec, "--model", "ltx9")
    assert result.exit_code == 2 and "unknown model profile `ltx9`" in result.output


@pytest.fixture
def weights_for_one_profile(tmp_path: Path, monkeypatch) -> None:
    """Weights for `ltx2-distilled` in $SCENEKIT_MODELS; none for any other profile, none in the Hugging Face cache."""
    import huggingface_hub

    (tmp_path / "models" / "ltx2-distilled").mkdir(parents=True)
    monkeypatch.setenv("SCENEKIT_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)


def test_profiles_say_what_each_needs_and_whether_its_weights_are_here(weights_for_one_profile):
    result = run("profiles", "--json")
    assert result.exit_code == 0, result.output
    found = {p["name"]: p for p in json.loads(result.output)["profiles"]}
    assert set(found) == set(available_profiles())
    assert found["preview"]["backend"] == "preview" and not found["preview"]["needs"]["gpu"]
    assert found["preview"]["weights"] == {
        "needed": False,
        "present": True,
        "where": None,
        "fetch": None,
        "files": [],
        "missing": [],
        "problem": None,
    }
    assert found["ltx2-distilled"]["needs"]["gpu"] and found["ltx2-distilled"]["needs"]["vram_gb"] > 0
    assert list(found) == sorted(found)
    table = run("profiles").output
    assert "(71 GB all" in table and "resident)" in table  # the measured resident peak, beside the least memory
    assert _said(found["ltx2-distilled"]["weights"]) == {
        "needed": True,
        "present": True,
        "where": "$SCENEKIT_MODELS/ltx2-distilled",
        "fetch": "scenekit fetch ltx2-distilled",
    }
    assert _said(found["ltx2-dev"]["weights"]) == {
        "needed": True,
        "present": False,
        "where": None,
        "fetch": "scenekit fetch ltx2-dev",
    }

    rows = table_rows(run("profiles").output)
    assert rows["preview"][:2] == ["CPUonly", "builtin"]
    assert rows["ltx2-distilled"][1] == "found:$SCENEKIT_MODELS/ltx2-distilled"
    assert rows["ltx2-dev"][1] == "missing(scenekitfetchltx2-dev)" and rows["ltx2-dev"][0].startswith("GPU~")


def _said(weights: dict) -> dict:
    """What `profiles --json` says of a profile's weights, less the files it lists."""
    return {key: weights[key] for key in ("needed", "present", "where", "fetch")}


def test_profiles_list_every_family_with_the_files_each_downloads(weights_for_one_profile, tmp_path: Path):
    found = {p["name"]: p for p in json.loads(run("profiles", "--json").output)["profiles"]}
    assert {p["backend"] for p in found.values()} == {"preview", "ltx2", "ltxv"}
    assert all(p["weights"]["needed"] and p["weights"]["files"] for p in found.values() if p["backend"] != "preview")
    assert found["ltxv-13b-0.9.8-distilled"]["weights"]["files"] == [
        {
            "repo": "Lightricks/LTX-Video",
            "revision": "main",
            "patterns": [
                "model_index.json",
                "scheduler/*",
                "tokenizer/*",
                "text_encoder/*",
                "ltxv-13b-0.9.8-distilled.safetensors",
                "ltxv-spatial-upscaler-0.9.8.safetensors",
            ],
        }
    ]
    assert found["ltxv-13b-0.9.8-distilled"]["weights"]["fetch"] == "scenekit fetch ltxv-13b-0.9.8-distilled"
    pipeline, checkpoints = found["ltx23-dev"]["weights"]["files"]
    assert pipeline["repo"] == "diffusers/LTX-2.3-Diffusers"
    assert {"transformer/config.json", "latent_upsampler/*", "connectors/*"} <= set(pipeline["patterns"])
    assert not any(p.endswith(".safetensors") for p in pipeline["patterns"])  # those are in Lightricks/LTX-2.3
    assert checkpoints == {
        "repo": "Lightricks/LTX-2.3",
        "revision": "main",
        "patterns": ["ltx-2.3-22b-dev.safetensors", "ltx-2.3-22b-distilled-lora-384-1.1.safetensors"],
    }

    folder = tmp_path / "models" / "ltx23-distilled"  # the pipeline's folders, not the 2.3 checkpoint
    folder.mkdir()
    weights = json.loads(run("profiles", "--json").output)["profiles"]
    weights = next(p["weights"] for p in weights if p["name"] == "ltx23-distilled")
    assert (weights["present"], weights["where"]) == (False, "$SCENEKIT_MODELS/ltx23-distilled")
    assert weights["missing"] == ["Lightricks/LTX-2.3:ltx-2.3-22b-distilled-1.1.safetensors"]
    assert table_rows(run("profiles").output)["ltx23-distilled"][1].startswith("incomplete:$SCENEKIT_MODELS")
    (folder / "ltx-2.3-22b-distilled-1.1.safetensors").touch()
    assert table_rows(run("profiles").output)["ltx23-distilled"][1] == "found:$SCENEKIT_MODELS/ltx23-distilled"


def test_fetch_downloads_every_repo_a_profile_reads_and_nothing_else(monkeypatch, tmp_path: Path):
    import huggingface_hub

    asked: list[tuple[str, str, list[str]]] = []

    def snapshot_download(repo, revision, allow_patterns):
        asked.append((repo, revision, allow_patterns))
        return str(tmp_path / repo / "snapshots" / "0123abcd")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    result = run("fetch", "ltx23-distilled")
    assert result.exit_code == 0, result.output
    assert [(repo, revision) for repo, revision, _ in asked] == [
        ("diffusers/LTX-2.3-Diffusers", "main"),
        ("Lightricks/LTX-2.3", "main"),
    ]
    assert asked[1][2] == ["ltx-2.3-22b-distilled-1.1.safetensors"]
    assert "models: {ltx23-distilled: diffusers/LTX-2.3-Diffusers@0123abcd}" in result.output.replace("\n", "")

    asked.clear()
    assert run("fetch", "ltxv-2b-0.9.8-distilled").exit_code == 0
    [(repo, _, patterns)] = asked
    assert repo == "Lightricks/LTX-Video" and "transformer/*" not in patterns and "vae/*" not in patterns
    assert {"ltxv-2b-0.9.8-distilled.safetensors", "ltxv-spatial-upscaler-0.9.8.safetensors"} <= set(patterns)

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    failed = run("fetch", "ltxv-2b-0.9.8-distilled")
    assert failed.exit_code == 1 and "fetching Lightricks/LTX-Video@main failed: offline" in failed.output
    assert "Traceback" not in failed.output
    assert run("fetch", "preview").exit_code == 2


def test_missing_ltx_video_weights_name_only_the_files_the_profile_reads(project: Project, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.delenv("SCENEKIT_MODELS", raising=False)
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    project.write(SCENE.replace("fps: 8}", "fps: 8, model: ltxv-2b-0.9.8-distilled}"))
    result = run("validate", project.spec)
    assert result.exit_code == 0, result.output
    hint = re.search(r"\(or `(hf download [^`]*)`\)", result.output.replace("\n", ""))
    assert hint, result.output
    assert hint[1] == (
        "hf download Lightricks/LTX-Video --revision main --include 'model_index.json' --include 'scheduler/*' "
        "--include 'tokenizer/*' --include 'text_encoder/*' --include 'ltxv-2b-0.9.8-distilled.safetensors' "
        "--include 'ltxv-spatial-upscaler-0.9.8.safetensors'"
    )


def table_rows(text: str) -> dict[str, list[str]]:
    """A printed table's rows by their first cell, the other cells' lines joined without spaces."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0]:
            current = rows[cells[0]] = [""] * (len(cells) - 1)
        for index, cell in enumerate(cells[1:]):
            current[index] += cell.replace(" ", "")
    return rows


def scenekit(*args: object, cwd: Path | None = None) -> str:
    """Run the installed command with its output piped, at 60 columns; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "scenekit", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "60"},
        check=True,
    )
    return done.stdout


def test_profiles_and_plan_never_cut_names_when_piped_at_60_columns(project: Project):
    text = scenekit("profiles")
    assert "…" not in text and set(table_rows(text)) == set(available_profiles()), text

    long_id = "the_opening_shot_of_the_scene"
    project.write(SCENE.replace("id: one", f"id: {long_id}").replace("continue: one", f"continue: {long_id}"))
    text = scenekit("plan", project.spec, "--cache-dir", project.cache)
    rows = table_rows(text)
    assert "…" not in text and f"{long_id}/generate" in rows, text
    nodes = json.loads(run("plan", project.spec, "--json", "--cache-dir", project.cache).output)["nodes"]
    for node in nodes:
        assert rows[node["id"]][0] == node["op"] and rows[node["id"]][-1] == node["key"][:12], text


def test_size_renders_every_clip_at_another_size_beside_the_output(project: Project):
    project.write(SCENE)
    result = run("render", project.spec, "--cache-dir", project.cache, "--size", "128x96")
    assert result.exit_code == 0, result.output
    frames, _, _ = read_video(project.root / "out.128x96.mp4")
    assert frames.shape[1:] == (96, 128, 3)
    assert json.loads((project.root / "out.128x96.manifest.json").read_text())["output"]["width"] == 128
    assert not (project.root / "out.mp4").exists() and not (project.root / "out.manifest.json").exists()
    assert (
        json.loads(run("plan", project.spec, "--json", "--cache-dir", project.cache).output)["nodes"][0]["status"]
        == "run"
    )


def test_model_and_size_overrides_never_replace_the_real_output(project: Project):
    project.write(SCENE)
    assert run("render", project.spec, "--cache-dir", project.cache).exit_code == 0
    real = (project.root / "out.mp4").read_bytes(), (project.root / "out.manifest.json").read_bytes()
    for args, written in [
        (["--model", "preview"], "out.preview"),
        (["--size", "128x96"], "out.128x96"),
        (["--model", "preview", "--size", "128x96"], "out.preview.128x96"),
    ]:
        result = run("render", project.spec, "--cache-dir", project.cache, *args)
        assert result.exit_code == 0, result.output
        assert f"wrote {written}.mp4" in result.output.replace(str(project.root) + os.sep, "")
        assert (project.root / f"{written}.mp4").is_file() and (project.root / f"{written}.manifest.json").is_file()
    assert ((project.root / "out.mp4").read_bytes(), (project.root / "out.manifest.json").read_bytes()) == real


def test_output_option_names_the_file_whatever_the_overrides(project: Project):
    project.write(SCENE)
    target = project.root / "quick" / "look.mp4"
    result = run("render", project.spec, "--cache-dir", project.cache, "--size", "128x96", "--output", target)
    assert result.exit_code == 0, result.output
    assert read_video(target)[0].shape[1:] == (96, 128, 3) and (project.root / "quick" / "look.manifest.json").is_file()
    assert not list(project.root.glob("out*"))
    bad = run("render", project.spec, "--cache-dir", project.cache, "--output", project.root / "look.mkv")
    assert bad.exit_code == 2 and "--output" in bad.output


def test_an_output_option_whose_manifest_would_overwrite_the_spec_is_caught_before_rendering(project: Project):
    spec = project.write(SCENE, "clip.manifest.json")  # a spec may have any name; writing clip.mp4 would replace it
    result = run("render", spec, "--cache-dir", project.cache, "--output", project.root / "clip.mp4")
    assert result.exit_code == 2 and "would overwrite the spec file clip.manifest.json" in result.output, result.output
    assert not project.cache.exists() and not (project.root / "clip.mp4").exists()


def test_plan_explains_against_the_manifest_of_the_output_it_would_write(project: Project):
    project.write(SCENE)
    assert run("render", project.spec, "--cache-dir", project.cache, "--size", "128x96").exit_code == 0
    project.write(SCENE.replace('"first"', '"the first"'))

    def reasons(*args: str) -> dict[str, str]:
        planned = json.loads(run("plan", project.spec, "--json", "--cache-dir", project.cache, *args).output)
        return {n["id"]: n["reason"] for n in planned["nodes"] if n["status"] == "run"}

    assert reasons("--size", "128x96")["one/generate"] == "clips[0].prompt changed"  # out.128x96.manifest.json
    assert reasons()["one/generate"] == "new"  # out.mp4 was never rendered


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output == f"scenekit {__version__}\n"
    assert metadata.version("scenekit") == __version__


def _commands(group: typer.core.TyperGroup, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        found += _commands(command, (*path, name)) if isinstance(command, typer.core.TyperGroup) else [(*path, name)]
    return found


def test_help_writes_arguments_and_flags_plainly():
    commands = _commands(typer.main.get_command(app))
    assert ("cache", "prune") in commands and ("render",) in commands
    for command in commands:
        text = run(*command, "--help").output
        assert "<bool>" not in text and not re.search(r"\{\w+\}", text), f"scenekit {' '.join(command)} --help:\n{text}"
    assert "Usage: scenekit render [OPTIONS] SPEC" in run("render", "--help").output
    assert "Usage: scenekit cache info [OPTIONS] [SPEC]" in run("cache", "info", "--help").output


def test_a_bad_size_is_exit_2_with_what_to_write(project: Project):
    project.write(SCENE)
    written = run("render", project.spec, "--cache-dir", project.cache, "--size", "128by96")
    assert written.exit_code == 2 and "--size" in written.output and "WIDTHxHEIGHT" in written.output
    odd = run("validate", project.spec, "--size", "100x96")
    assert odd.exit_code == 2 and "size 100x96 (from --size) is not a multiple of 32" in odd.output


def test_cache_commands_find_the_project_cache_from_any_folder_in_the_project(project: Project, monkeypatch):
    monkeypatch.delenv("SCENEKIT_CACHE_DIR", raising=False)
    spec = project.write(SCENE, "specs/scene.yaml")
    assert run("render", spec).exit_code == 0
    cache = project.root / ".scenekit" / "cache"
    for folder in (project.root, project.root / "specs", project.root / "notes" / "drafts"):
        folder.mkdir(parents=True, exist_ok=True)
        monkeypatch.chdir(folder)
        info = run("cache", "info")
        assert info.exit_code == 0 and f"cache {cache}\n" in info.output and "5 entries" in info.output, info.output
    assert "5 entries" in run("cache", "info", spec).output


def test_cache_info_says_where_it_looked_when_there_is_no_cache(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SCENEKIT_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    info = run("cache", "info")
    assert info.exit_code == 0 and f"cache {tmp_path.resolve() / '.scenekit' / 'cache'} (not there" in info.output
    monkeypatch.setenv("SCENEKIT_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert f"cache {tmp_path.resolve() / 'elsewhere'} (not there" in run("cache", "info").output


def test_prune_without_criteria_says_what_it_needs(project: Project):
    project.write(SCENE)
    run("render", project.spec, "--cache-dir", project.cache)
    for args in ([], ["--keep", project.spec]):
        pruned = run("cache", "prune", "--cache-dir", project.cache, *args)
        assert pruned.exit_code == 2, pruned.output
        assert (
            "Usage: scenekit cache prune" in pruned.output
            and "--older-than AGE, --max-size SIZE or --all" in pruned.output
        )
    assert "5 entries" in run("cache", "info", "--cache-dir", project.cache).output
