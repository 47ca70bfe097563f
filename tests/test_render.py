"""End-to-end renders with the preview model: exact frame counts, caching, minimal re-runs."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from conftest import Project, read_video

SCENE = """
    scenekit: 1
    name: demo
    vars: {style: "35mm"}
    defaults: {model: preview, size: 128x96, fps: 12, seed: 3}
    clips:
      - id: arrival
        prompt: "A lighthouse, {{ style }}"
        duration: 2s
        conditioning:
          - {image: assets/red.png, frame: 0, strength: 1.0}
      - id: keeper
        continue: arrival
        overlap: 9
        prompt: "The keeper climbs, {{ style }}"
        duration: 1.5s
      - id: beam
        prompt: "The beam sweeps the sea"
        frames: 20
        transition: {type: crossfade, duration: 0.5s}
    output: {file: out/demo.mp4, crf: 10, preset: ultrafast}
"""


def make_scene(project: Project, text: str = SCENE) -> None:
    project.image("assets/red.png", (220, 30, 30))
    project.write(text)


def test_output_frame_count_and_duration_are_exact(project: Project):
    make_scene(project)
    result = project.render()
    frames, fps, duration = read_video(result.output)
    expected = 24 + 18 + 20 - 6  # sum of clip lengths minus the 0.5s crossfade at 12 fps
    assert frames.shape == (expected, 96, 128, 3)
    assert fps == 12
    assert duration == Fraction(expected, 12)
    manifest = json.loads(result.manifest.read_text())
    assert manifest["output"]["frames"] == expected
    assert manifest["seeds"] == {"arrival": 3, "keeper": 3, "beam": 3}
    assert {n["id"] for n in manifest["nodes"]} == {
        "arrival/generate",
        "keeper/generate",
        "beam/generate",
        "arrival/segment",
        "keeper/segment",
        "beam/segment",
        "stitch",
    }
    assert all(n["status"] == "ran" for n in manifest["nodes"])
    assert manifest["spec"]["git"] is None  # the temp project is not a git repository


def test_joined_segments_play_as_one_stream_with_exact_timestamps(project: Project):
    """The stitch joins the clips' H.264 segments without re-encoding; every frame sits at i / fps."""
    import av

    make_scene(project)
    result = project.render()
    with av.open(str(result.output)) as container:
        stream = container.streams.video[0]
        times = [frame.pts * stream.time_base for frame in container.decode(stream)]
    assert times == [Fraction(i, 12) for i in range(24 + 18 + 20 - 6)]
    key_frames = {"arrival": 0, "keeper": 24, "beam": 24 + 18 - 6}  # each segment starts on a key frame
    with av.open(str(result.output)) as container:
        stream = container.streams.video[0]
        starts = {round(packet.pts * stream.time_base * 12) for packet in container.demux(stream) if packet.is_keyframe}
    assert set(key_frames.values()) <= starts


def test_second_render_runs_nothing(project: Project):
    make_scene(project)
    project.render()
    assert project.planned_runs() == {}
    assert project.render().ran == []


def test_editing_a_prompt_reruns_that_clip_its_continuations_and_their_segments(project: Project):
    make_scene(project)
    project.render()
    project.write(SCENE.replace("A lighthouse,", "A tall lighthouse,"))
    runs = project.planned_runs()
    # beam's segment too: it crossfades in from keeper's last frames
    assert set(runs) == {
        "arrival/generate",
        "keeper/generate",
        "arrival/segment",
        "keeper/segment",
        "beam/segment",
        "stitch",
    }
    assert runs["arrival/generate"] == "clips[0].prompt changed"
    assert runs["keeper/generate"] == "input arrival/generate changed"
    assert sorted(project.render().ran) == sorted(runs)


def test_editing_an_unrelated_clip_leaves_the_others_cached(project: Project):
    make_scene(project)
    project.render()
    project.write(SCENE.replace("The beam sweeps the sea", "The beam sweeps the bay"))
    assert set(project.planned_runs()) == {"beam/generate", "beam/segment", "stitch"}


def test_renaming_a_clip_reencodes_only_its_labelled_segment(project: Project):
    make_scene(project)
    project.render()
    project.write(SCENE.replace("id: arrival", "id: landfall").replace("continue: arrival", "continue: landfall"))
    assert set(project.planned_runs()) == {"landfall/segment", "stitch"}  # the preview draws clip ids


def test_changing_an_asset_reruns_the_clip_that_uses_it(project: Project):
    make_scene(project)
    project.render()
    project.image("assets/red.png", (200, 30, 30))
    runs = project.planned_runs()
    assert set(runs) == {
        "arrival/generate",
        "keeper/generate",
        "arrival/segment",
        "keeper/segment",
        "beam/segment",
        "stitch",
    }
    assert runs["arrival/generate"] == "asset assets/red.png changed"


def test_model_override_to_the_profile_in_use_keeps_the_keys(project: Project):
    make_scene(project)
    default_keys = {n.key for n in project.prepare().graph.ordered()}
    assert {n.key for n in project.prepare(model="preview").graph.ordered()} == default_keys


def test_corrupt_cache_entry_is_recomputed_not_used(project: Project):
    make_scene(project)
    first = project.render()
    original = first.output.read_bytes()
    key = project.prepare().graph.node("beam/generate").key
    frames_file = next(project.cache.glob(f"objects/*/{key}/frames.mkv"))
    frames_file.write_bytes(frames_file.read_bytes()[:-100] + b"\0" * 100)
    stitch_key = project.prepare().graph.node("stitch").key
    next(project.cache.glob(f"objects/*/{stitch_key}")).joinpath("entry.json").unlink()
    second = project.render()
    assert sorted(second.ran) == ["beam/generate", "stitch"]
    assert second.output.read_bytes() == original


def test_frames_handed_over_in_memory_equal_the_stored_ones(project: Project):
    """The first render's segments read the clips' frames from memory; with the segments and the stitch
    gone, they read the frames back from the cache and must give the same video."""
    make_scene(project)
    first = project.render()
    original = first.output.read_bytes()
    graph = project.prepare().graph
    for node_id in ("arrival/segment", "keeper/segment", "beam/segment", "stitch"):
        next(project.cache.glob(f"objects/*/{graph.node(node_id).key}")).joinpath("entry.json").unlink()
    second = project.render()
    assert sorted(second.ran) == ["arrival/segment", "beam/segment", "keeper/segment", "stitch"]
    assert second.output.read_bytes() == original


def test_frames_held_in_memory_are_let_go_once_no_later_node_reads_them(project: Project, monkeypatch):
    """The stitch reads files only, so every clip's frames are dropped from memory before it starts."""
    from scenekit.engine.events import SilentEvents
    from scenekit.engine.session import render
    from scenekit.ops import NodeOutput

    log: list[str] = []
    real_release = NodeOutput.release

    def release(self):
        if self.held("frames.mkv") is not None:
            log.append("released frames")
        real_release(self)

    class Recorder(SilentEvents):
        def node_started(self, node, position, total):
            log.append(node.id)

    monkeypatch.setattr(NodeOutput, "release", release)
    make_scene(project)
    render(project.prepare(), Recorder())
    assert log[-1] == "stitch" and log.count("released frames") == 3


def test_segments_encode_beside_the_next_clips_generation(project: Project, monkeypatch):
    """A clip's segment is encoded in the background while the next clip generates."""
    import dataclasses
    import threading

    from scenekit import ops
    from scenekit.engine.events import SilentEvents
    from scenekit.engine.session import render
    from scenekit.ops import get_operation

    keeper_started = threading.Event()
    overlapped: list[bool] = []
    segment_op = get_operation("stitch.segment")

    def waiting_segment(node, inputs, ctx):
        if node.id == "arrival/segment":
            overlapped.append(keeper_started.wait(timeout=10))
        segment_op.run(node, inputs, ctx)

    class Recorder(SilentEvents):
        def node_started(self, node, position, total):
            if node.id == "keeper/generate":
                keeper_started.set()

    monkeypatch.setitem(ops._REGISTRY, "stitch.segment", dataclasses.replace(segment_op, run=waiting_segment))
    make_scene(project)
    result = render(project.prepare(), Recorder())
    assert overlapped == [True]  # arrival's segment was still running when keeper started generating
    assert result.output.is_file()


def test_a_failed_background_write_fails_the_render_and_stores_nothing_half_written(project: Project, monkeypatch):
    from scenekit import node_media
    from scenekit.errors import RenderError

    def disk_full(path, frames, fps):
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    make_scene(project)
    monkeypatch.setattr(node_media, "write_frames", disk_full)
    with pytest.raises(RenderError, match=r"arrival/generate: writing its cache entry failed: .*No space left"):
        project.render()
    assert not list(project.cache.glob("objects/*/*/frames.mkv"))
    assert not list((project.cache / "tmp").iterdir())
    assert not (project.root / "out" / "demo.mp4").exists()
    monkeypatch.undo()
    again = project.render()
    assert "arrival/generate" in again.ran and again.output.is_file()


def test_continued_clip_starts_from_the_last_frame_it_continues(project: Project):
    make_scene(project)
    frames, _, _ = read_video(project.render().output)
    frames = frames[:, 26:68]  # the picture between the burnt-in labels and captions, which change at the cut
    last_of_arrival, first_of_keeper = frames[23].astype(int), frames[24].astype(int)
    step = np.abs(last_of_arrival - first_of_keeper).mean()
    unrelated = np.abs(frames[23].astype(int) - frames[-1].astype(int)).mean()
    assert step < 8 < unrelated


def test_fade_goes_through_black(project: Project):
    make_scene(project, SCENE.replace("type: crossfade, duration: 0.5s", "type: fade, duration: 9f"))
    frames, _, _ = read_video(project.render().output)
    assert len(frames) == 24 + 18 + 20 - 9
    frames = frames[:, 26:68]  # the picture goes through black; the burnt-in text does not
    darkest = frames[24 + 18 - 9 + 4]  # middle of the 9-frame fade
    assert darkest.mean() < 10 < frames[24 + 18 - 9 - 1].mean()


def test_snapped_frames_are_trimmed(project: Project):
    make_scene(project)
    graph = project.prepare().graph
    assert graph.node("arrival/generate").params["frames"] == 25  # 24 snapped up to 8k+1
    assert graph.node("keeper/generate").params["frames"] == 33  # 9 context + 18 new -> 33
    assert graph.node("stitch").params["clips"][1]["range"] == [9, 27]


def test_clip_loops_generate_clips(project: Project):
    project.write("""
        scenekit: 1
        vars: {shots: [{name: dawn, len: 9}, {name: dusk, len: 10}]}
        defaults: {size: 64x64, fps: 8}
        clips:
          - for: shot in shots
            clip: {id: "{{ shot.name }}", prompt: "shot {{ loop.index }}", frames: "{{ shot.len }}"}
    """)
    timeline = project.prepare().timeline
    assert [(c.id, c.prompt, c.frames) for c in timeline.clips] == [("dawn", "shot 1", 9), ("dusk", "shot 2", 10)]


def test_includes_merge_defaults_vars_and_clips(project: Project):
    project.write(
        """
        vars: {style: noir}
        defaults: {size: 64x64, fps: 8}
        clips:
          - {id: intro, prompt: "intro {{ style }}", frames: 4}
    """,
        "shared/base.yaml",
    )
    project.write("""
        scenekit: 1
        include: [shared/base.yaml]
        defaults: {fps: 10}
        clips:
          - {id: main, prompt: "main {{ style }}", frames: 5}
    """)
    timeline = project.prepare().timeline
    assert [c.id for c in timeline.clips] == ["intro", "main"]
    assert timeline.clips[0].prompt == "intro noir"
    assert timeline.fps == 10 and timeline.size == (64, 64)


def test_video_and_clip_conditioning_render(project: Project):
    from scenekit.media.video import write_frames

    clip = np.zeros((5, 96, 128, 3), np.uint8)
    clip[..., 2] = 200
    (project.root / "assets").mkdir()
    write_frames(project.root / "assets" / "blue.mkv", clip, Fraction(12))
    project.write("""
        scenekit: 1
        defaults: {size: 128x96, fps: 12}
        clips:
          - id: first
            prompt: "first"
            frames: 12
            conditioning: [{video: assets/blue.mkv, frames: 5, frame: 2}]
          - id: echo
            prompt: "echo of the first"
            frames: 12
            conditioning: [{clip: first, frames: 3, frame: -3, strength: 0.5}]
    """)
    graph = project.prepare().graph
    echo = graph.node("echo/generate")
    assert echo.inputs == {"cond0": "first/generate"}
    assert echo.params["conditions"][0]["range"] == [9, 12] and echo.params["conditions"][0]["at"] == 9
    frames, _, _ = read_video(project.render().output)
    assert len(frames) == 24
    assert frames[2][..., 2].mean() > frames[2][..., 0].mean() + 60  # the blue video shows where it applies


def test_manifest_records_git_commit_and_uncommitted_changes(project: Project):
    import subprocess

    make_scene(project)

    def git(*args):
        return subprocess.run(["git", "-C", str(project.root), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "empty")
    git("add", "scene.yaml", "assets/red.png")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "scene")
    head = subprocess.run(
        ["git", "-C", str(project.root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    manifest = json.loads(project.render().manifest.read_text())
    assert manifest["spec"]["git"] == {"commit": head, "dirty": False}
    project.write(SCENE.replace("A lighthouse,", "A lighthouse at noon,"))
    manifest = json.loads(project.render().manifest.read_text())
    assert manifest["spec"]["git"] == {"commit": head, "dirty": True}


def test_scene_fades_touch_only_the_first_and_last_segments(project: Project):
    make_scene(project)
    project.render()
    project.write(SCENE.replace("preset: ultrafast}", "preset: ultrafast, fade_in: 1s, fade_out: 0.5s}"))
    runs = project.planned_runs()
    assert set(runs) == {"arrival/segment", "beam/segment", "stitch"}  # keeper's stretch is not faded
    assert runs["beam/segment"] == "output.fade_in/fade_out changed"
    frames, _, _ = read_video(project.render().output)
    assert len(frames) == 24 + 18 + 20 - 6
    assert frames[0].mean() < frames[12].mean() / 4 and frames[-1].mean() < frames[-7].mean() / 3


def test_fades_longer_than_the_scene_are_a_located_error(project: Project):
    make_scene(project, SCENE.replace("preset: ultrafast}", "preset: ultrafast, fade_in: 3s, fade_out: 3s}"))
    from scenekit.errors import SpecError

    with pytest.raises(SpecError) as error:
        project.prepare()
    (issue,) = error.value.issues
    assert issue.field == "output.fade_out" and "longer than the scene (56 frames)" in issue.message
    assert issue.location is not None and issue.location.line == 20  # the output line


def test_clips_of_another_size_are_letterboxed_into_the_output(project: Project):
    project.image("assets/red.png", (220, 30, 30))
    project.write("""
        scenekit: 1
        defaults: {model: preview, size: 128x96, fps: 12, seed: 3}
        clips:
          - {id: wide, prompt: "wide", frames: 12}
          - id: square
            prompt: "square"
            size: 64x64
            frames: 12
            transition: {type: crossfade, duration: 4f}
        output: {file: out.mp4, preset: ultrafast, crf: 10}
    """)
    frames, _, _ = read_video(project.render().output)
    assert frames.shape == (20, 96, 128, 3)
    last = frames[-1, 30:70].astype(int)  # rows clear of the preview's label and timecode
    assert last[:, :12].max() < 20 and last[:, -12:].max() < 20  # black bars left and right of the square clip
    assert last[:, 24:104].mean() > 40  # the picture in between
    project.write(project.spec.read_text().replace("crf: 10}", "crf: 10, size: 256x192}"))
    assert read_video(project.render().output)[0].shape == (20, 192, 256, 3)


def test_plan_names_an_operation_version_change_only_when_the_version_changed(project: Project, monkeypatch):
    import dataclasses

    from scenekit import ops

    make_scene(project)
    project.render()
    segment = ops.get_operation("stitch.segment")
    monkeypatch.setitem(ops._REGISTRY, "stitch.segment", dataclasses.replace(segment, version=segment.version + 1))
    runs = project.planned_runs()
    assert runs["arrival/segment"] == "operation version changed"
    assert runs["stitch"] != "operation version changed"  # its inputs changed, its own version did not


def test_the_manifest_records_the_spec_as_it_was_read_for_the_render(project: Project):
    import hashlib

    from scenekit.engine.events import SilentEvents
    from scenekit.engine.session import render

    make_scene(project)
    read = project.spec.read_bytes()
    prepared = project.prepare()
    project.write(SCENE.replace("A lighthouse,", "An edit saved during the render,"))
    manifest = json.loads(render(prepared, SilentEvents()).manifest.read_text())
    assert manifest["spec"]["files"][0]["sha256"] == hashlib.sha256(read).hexdigest()
