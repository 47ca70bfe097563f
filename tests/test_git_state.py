"""The manifest's git state comes from a query that runs none of the commands a repository's config names
(a project folder may come with its own `.git`, e.g. from an archive)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import Project

SCENE = """
    scenekit: 1
    defaults: {size: 64x64, fps: 12}
    clips:
      - {id: a, prompt: "first", frames: 9}
    output: {file: out.mp4, preset: ultrafast}
"""

COMMANDS = ("core.fsmonitor", "filter.evil.clean", "filter.evil.process")  # what a plain `git status` runs (smudge,
# textconv and diff commands are switched off too, but status never runs them)


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("setting", COMMANDS)
def test_render_runs_no_command_the_repositorys_config_names(project: Project, tmp_path_factory, setting: str):
    project.write(SCENE)
    (project.root / ".gitattributes").write_text("* filter=evil diff=evil\n")
    git(project.root, "init", "-q")
    git(project.root, "add", ".")
    git(project.root, "commit", "-q", "-m", "scene")
    marker = tmp_path_factory.mktemp("marker") / "ran"
    hook = project.root / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch '{marker}'\ncat\n")
    hook.chmod(0o755)
    git(project.root, "config", setting, str(hook))
    git(project.root, "config", "filter.evil.required", "true")
    project.spec.touch()  # stat info changed: a plain `git status` re-reads the file through the clean filter

    manifest = json.loads(project.render().manifest.read_text())
    assert not marker.exists()
    assert manifest["spec"]["git"] == {"commit": git(project.root, "rev-parse", "HEAD"), "dirty": False}
    project.write(SCENE.replace("first", "first, edited"))
    assert json.loads(project.render().manifest.read_text())["spec"]["git"]["dirty"] is True
    assert not marker.exists()
