"""A real watcher on a temp folder: edits re-render what changed, nothing else."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scenekit.engine.events import SilentEvents
from scenekit.engine.session import RenderOptions
from scenekit.graph.nodes import Node
from scenekit.watch.loop import WatchLoop

from conftest import Project

SCENE = """
    scenekit: 1
    defaults: {size: 128x96, fps: 12}
    clips:
      - {id: a, prompt: "first", frames: 12}
      - {id: b, prompt: "second", frames: 12}
      - {id: c, prompt: "third", frames: 12, transition: crossfade}
    output: {file: out.mp4, preset: ultrafast}
"""

SLOW_SCENE = SCENE.replace("128x96", "384x256").replace('"first", frames: 12', '"first", frames: 240')


class Recorder(SilentEvents):
    """Records watch events and node starts, with a condition to wait on."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.started: list[str] = []
        self.condition = threading.Condition()

    def _add(self, *item: object) -> None:
        with self.condition:
            self.log.append(item)
            self.condition.notify_all()

    def state(self, text: str) -> None:
        self._add("state", text.split(":")[0])

    def changed(self, changes, reruns) -> None:
        self._add("changed", changes, sorted(reruns))

    def invalid(self, issues) -> None:
        self._add("invalid", [issue.field for issue in issues])

    def rendered(self, label, result, seconds) -> None:
        self._add("rendered", label, sorted(result.ran))

    def cancelled(self, label) -> None:
        self._add("cancelled", label)

    def failed(self, label, message) -> None:
        self._add("failed", label, message)

    def node_started(self, node: Node, position: int, total: int) -> None:
        self.started.append(node.id)
        self._add("started", node.id)

    def wait_for(self, kind: str, count: int = 1, timeout: float = 30) -> list[tuple]:
        with self.condition:
            assert self.condition.wait_for(lambda: len(self.of(kind)) >= count, timeout), self.log
            return self.of(kind)

    def of(self, kind: str) -> list[tuple]:
        return [item for item in self.log if item[0] == kind]


@pytest.fixture
def watching(project: Project):
    def start(text: str = SCENE, *, model: str | None = None, first: str = "changed", **kwargs) -> Recorder:
        project.write(text)
        recorder = Recorder()
        options = RenderOptions(cache_dir=project.cache, model=model)
        loop = WatchLoop(project.spec, options, recorder, lambda: recorder, **kwargs)
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        started.append((loop, thread))
        recorder.wait_for(first)
        return recorder

    started: list[tuple[WatchLoop, threading.Thread]] = []
    yield start
    for loop, thread in started:
        loop.stop()
        thread.join(10)


def save(path: Path, text: str) -> None:
    """Save the way editors do: write a temp file, then rename it over the original."""
    temp = path.with_suffix(".swp")
    temp.write_text(text)
    temp.replace(path)


def test_edit_rerenders_only_that_clip_and_the_segments_it_shows_in(project: Project, watching):
    recorder = watching()
    assert recorder.wait_for("rendered")[0][2] == [
        "a/generate",
        "a/segment",
        "b/generate",
        "b/segment",
        "c/generate",
        "c/segment",
        "stitch",
    ]
    save(project.spec, project.spec.read_text().replace('"second"', '"second take"'))
    recorder.wait_for("rendered", 2)
    reruns = ["b/generate", "b/segment", "c/segment", "stitch"]  # c crossfades in from b
    assert recorder.of("changed")[1] == ("changed", ["clips[1].prompt"], reruns)
    assert recorder.of("rendered")[1][2] == reruns


def test_unchanged_save_rerenders_nothing(project: Project, watching):
    recorder = watching()
    recorder.wait_for("rendered")
    text = project.spec.read_text()
    save(project.spec, text)
    project.spec.touch()
    time.sleep(0.5)  # well past the debounce: a batch for the saves above would come before the edit below
    save(project.spec, text.replace('"first"', '"first take"'))
    recorder.wait_for("rendered", 2)
    assert [item[1] for item in recorder.of("changed")] == [["new"], ["clips[0].prompt"]]


def test_a_failed_write_is_reported_and_the_next_save_renders_again(project: Project, watching, monkeypatch):
    """An OSError (here: the output folder became unwritable) does not end the watch: it is reported
    with the path, and the next save renders again, even one that changes nothing."""
    from scenekit.engine import session

    def unwritable(source: Path, target: Path) -> None:
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(session, "atomic_copy", unwritable)
    recorder = watching()
    assert recorder.wait_for("state")[0] == ("state", "error")
    [(_, label, message)] = recorder.of("failed")
    assert label == "render" and "Permission denied" in message and str(project.root / "out.mp4") in message
    monkeypatch.undo()
    save(project.spec, project.spec.read_text())
    assert recorder.wait_for("rendered")[0][2] == []  # every node was cached before the write failed
    assert (project.root / "out.mp4").is_file()


def test_ctrl_c_stops_watching_with_exit_130(project: Project):
    project.write(SCENE)
    process = subprocess.Popen(
        [sys.executable, "-m", "scenekit", "watch", str(project.spec), "--cache-dir", str(project.cache)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (project.root / "out.manifest.json").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "stopped watching" in stderr and "Traceback" not in stderr


def test_invalid_edit_reports_and_recovers(project: Project, watching):
    recorder = watching()
    recorder.wait_for("rendered")
    good = project.spec.read_text()
    save(project.spec, good.replace("frames: 12}\n  - {id: b", "frames: -1}\n  - {id: b"))
    assert recorder.wait_for("invalid")[0] == ("invalid", ["clips[0].frames"])
    assert (project.root / "out.mp4").is_file()  # the last good render stays
    save(project.spec, good.replace('"first"', '"first again"'))
    recorder.wait_for("rendered", 2)
    assert recorder.of("rendered")[1][2] == ["a/generate", "a/segment", "stitch"]


def edit_while_first_clip_renders(project: Project, watching, old: str, new: str) -> Recorder:
    """Start watching a slow scene and save an edit while `a/generate` is running."""
    recorder = watching(SLOW_SCENE)
    while "a/generate" not in recorder.started:
        time.sleep(0.005)
    save(project.spec, SLOW_SCENE.replace(old, new))
    recorder.wait_for("rendered")
    return recorder


def test_change_during_render_cancels_stale_node_and_restarts(project: Project, watching):
    recorder = edit_while_first_clip_renders(project, watching, '"first"', '"first, edited"')
    assert recorder.of("cancelled") == [("cancelled", "render")]
    assert recorder.of("rendered")[0][2] == [
        "a/generate",
        "a/segment",
        "b/generate",
        "b/segment",
        "c/generate",
        "c/segment",
        "stitch",
    ]
    assert not list((project.cache / "tmp").iterdir())
    assert len(list(project.cache.glob("objects/*/*/entry.json"))) == 7  # nothing from the cancelled node


def test_change_elsewhere_during_render_lets_the_running_node_finish(project: Project, watching):
    recorder = edit_while_first_clip_renders(project, watching, '"third"', '"third, edited"')
    assert recorder.of("cancelled") == [("cancelled", "render")]
    assert recorder.started.count("a/generate") == 1  # kept running, then taken from the cache
    assert recorder.of("rendered")[0][2] == [
        "a/segment",
        "b/generate",
        "b/segment",
        "c/generate",
        "c/segment",
        "stitch",
    ]


def test_preview_first_renders_preview_then_full_with_separate_outputs_and_keys(
    project: Project, watching, monkeypatch
):
    profiles = project.root / "profiles"
    profiles.mkdir()
    (profiles / "sharp.yaml").write_text(
        "name: sharp\nbackend: preview\nversion: 1\nconstraints: {size_multiple: 32, frame_step: 8}\n"
    )
    monkeypatch.setenv("SCENEKIT_PROFILE_PATH", str(profiles))
    recorder = watching(SCENE.replace("fps: 12}", "fps: 12, model: sharp}"), preview_first=True)
    recorder.wait_for("state")
    assert [item[1] for item in recorder.of("rendered")] == ["preview", "render"]
    assert all(len(item[2]) == 7 for item in recorder.of("rendered"))  # no cache entry is shared
    assert (project.root / "out.preview.mp4").is_file() and (project.root / "out.mp4").is_file()


def test_preview_first_with_preview_clips_renders_once(project: Project, watching):
    recorder = watching(preview_first=True)
    recorder.wait_for("state")
    assert [item[1] for item in recorder.of("rendered")] == ["render"]


def test_preview_size_renders_a_small_pass_first(project: Project, watching):
    from conftest import read_video

    recorder = watching(preview_size=(64, 64))
    recorder.wait_for("state")
    assert [item[1] for item in recorder.of("rendered")] == ["preview", "render"]
    assert read_video(project.root / "out.preview.mp4")[0].shape[1:] == (64, 64, 3)
    assert read_video(project.root / "out.mp4")[0].shape[1:] == (96, 128, 3)


def test_a_save_made_while_the_spec_was_being_read_is_not_lost(tmp_path: Path):
    """set_files after a reload keeps the last compared content of files it already watched."""
    from scenekit.watch.files import FileWatcher

    spec = tmp_path / "scene.yaml"
    spec.write_text("first")
    watcher = FileWatcher([spec])
    watcher.start()
    try:
        save(spec, "second")  # lands while the caller is still preparing the first version
        watcher.set_files([spec])
        assert watcher.wait_for_change(timeout=5) == [spec.resolve()]
    finally:
        watcher.stop()


LORA_SCENE = """
    scenekit: 1
    defaults: {model: ltx23-distilled, size: 256x256, fps: 12, loras: [{file: loras/style.safetensors}]}
    clips:
      - id: a
        prompt: "first"
        frames: 9
        control: {lora: loras/ic.safetensors, video: control.mp4}
    output: {file: out.mp4, preset: ultrafast}
"""


def _control_video(path: Path, colour: int) -> None:
    from fractions import Fraction

    import numpy as np

    from scenekit.media.video import write_frames

    write_frames(path, np.full((9, 64, 64, 3), colour, dtype=np.uint8), Fraction(12))


def test_saving_a_lora_or_a_control_video_the_spec_names_renders_again(project: Project, watching):
    """Under `--model preview` the render reads neither the LoRAs nor the control video, yet saving one of
    them re-checks and re-renders the spec, and says which file changed."""
    (project.root / "loras").mkdir()
    for name in ("style", "ic"):
        (project.root / "loras" / f"{name}.safetensors").write_bytes(b"v1")
    _control_video(project.root / "control.mp4", 0)
    recorder = watching(LORA_SCENE, model="preview")
    recorder.wait_for("rendered")
    for count, (path, label) in enumerate(
        [
            (project.root / "loras" / "style.safetensors", "asset loras/style.safetensors"),
            (project.root / "loras" / "ic.safetensors", "asset loras/ic.safetensors"),
            (project.root / "control.mp4", "asset control.mp4"),
        ],
        start=2,
    ):
        if path.suffix == ".mp4":
            _control_video(path, 255)
        else:
            path.write_bytes(b"v2")
        recorder.wait_for("rendered", count)
        assert recorder.of("changed")[-1][1] == [label]


def test_a_lora_file_the_invalid_spec_names_renders_once_it_is_saved(project: Project, watching):
    (project.root / "loras").mkdir()
    _control_video(project.root / "control.mp4", 0)
    (project.root / "loras" / "ic.safetensors").write_bytes(b"v1")
    recorder = watching(LORA_SCENE, model="preview", first="invalid")
    assert recorder.of("invalid")[0][1] == ["defaults.loras[0].file"]
    (project.root / "loras" / "style.safetensors").write_bytes(b"v1")
    assert recorder.wait_for("rendered")[0][1] == "render"


def test_comparing_by_content_reads_a_file_again_only_when_it_was_saved(tmp_path: Path, monkeypatch):
    import scenekit.spec.assets as assets
    from scenekit.watch.files import content_hashes

    reads: list[Path] = []
    monkeypatch.setattr(assets, "file_sha256", lambda path: reads.append(path) or f"hash of {path.read_text()}")
    assets._sha256_of_version.cache_clear()
    lora, spec = tmp_path / "big.safetensors", tmp_path / "scene.yaml"
    lora.write_text("weights")
    spec.write_text("one")
    content_hashes([lora, spec])
    time.sleep(0.01)  # a later mtime for the save
    spec.write_text("two")
    assert content_hashes([lora, spec]) == {lora: "hash of weights", spec: "hash of two"}
    assert reads == [lora, spec, spec]  # the unsaved file was read once
