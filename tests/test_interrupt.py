"""A render killed midway (SIGKILL) resumes from the cache; nothing half-written is ever used."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import Project, read_video

CLIPS = "\n".join(f"  - {{id: shot{i}, prompt: 'shot number {i}', duration: 2s}}" for i in range(6))
SCENE = f"""scenekit: 1
defaults: {{size: 384x256, fps: 24}}
clips:
{CLIPS}
output: {{file: out.mp4, preset: ultrafast}}
"""


def test_sigkill_midway_then_rerun_resumes_from_cache(project: Project):
    project.spec.write_text(SCENE)
    process = subprocess.Popen(
        [sys.executable, "-m", "scenekit", "render", str(project.spec), "--cache-dir", str(project.cache)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(project.cache.glob("objects/*/*/entry.json")):
        assert process.poll() is None, "the render ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert not (project.root / "out.mp4").exists()
    finished = {p.parent.name for p in project.cache.glob("objects/*/*/entry.json")}
    planned = {p.node.key: p.status for p in project.prepare().plan()}
    assert finished and all(planned[key] == "cached" for key in finished)

    result = project.render()
    assert len(result.ran) == 13 - len(finished)  # 6 clips, their 6 segments, the stitch
    frames, _, _ = read_video(result.output)
    assert len(frames) == 6 * 48
    assert not list((project.cache / "tmp").iterdir())  # the killed process's work folder was cleaned up
    assert not list((project.cache / "locks").iterdir())  # its key lock died with it; the rerun took it and let it go


def test_ctrl_c_stops_cleanly_with_exit_130_and_leaves_nothing_half_written(project: Project):
    project.spec.write_text(SCENE)
    process = subprocess.Popen(
        [sys.executable, "-m", "scenekit", "render", str(project.spec), "--cache-dir", str(project.cache)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(project.cache.glob("objects/*/*/entry.json")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    assert not list((project.cache / "tmp").iterdir())
    assert not (project.root / "out.mp4").exists()
    assert not [p for p in project.root.iterdir() if p.name.endswith(".tmp")]
