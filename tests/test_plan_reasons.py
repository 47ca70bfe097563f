"""`scenekit plan`'s reasons name exactly what changed, also after clips are renamed or reordered."""

from __future__ import annotations

from conftest import Project

SCENE = """
    scenekit: 1
    defaults: {model: preview, size: 128x96, fps: 12, seed: 3}
    clips:
      - {id: arrival, prompt: "A lighthouse", duration: 1s}
      - {id: keeper, prompt: "The keeper climbs", duration: 1s}
      - {id: beam, prompt: "The beam", frames: 12, transition: {type: crossfade, duration: 0.5s}}
      - {id: dusk, prompt: "Dusk", frames: 12}
    output: {file: out.mp4, preset: ultrafast}
"""


def test_renaming_a_clip_reruns_only_what_shows_its_id_and_says_so(project: Project):
    project.write(SCENE)
    project.render()
    project.write(SCENE.replace("id: arrival", "id: zz"))  # now sorts last: another position among the nodes
    runs = project.planned_runs()
    assert set(runs) == {"zz/segment", "stitch"}  # the preview draws the clip id into the segment
    assert "clips[0].id" in runs["zz/segment"]
    assert not any(
        word in runs["zz/segment"] for word in ("transition", "start", "length", "input", "clips[1]", "clips[3]")
    )
    assert runs["stitch"] == "input zz/segment changed"


def test_renaming_and_editing_names_only_the_edit(project: Project):
    project.write(SCENE)
    project.render()
    project.write(SCENE.replace("id: arrival", "id: zz").replace('"Dusk"', '"Dawn"'))
    runs = project.planned_runs()
    assert runs["dusk/generate"] == "clips[3].prompt changed"
    assert "clips[3]" in runs["dusk/segment"] and "clips[0]" not in runs["dusk/segment"]


def test_changing_a_transition_names_the_transition(project: Project):
    project.write(SCENE)
    project.render()
    project.write(SCENE.replace("duration: 0.5s}", "duration: 0.25s}"))
    runs = project.planned_runs()
    assert "clips[2].transition changed" in runs["beam/segment"].split("; ")
    assert set(runs) >= {"beam/segment", "stitch"} and not any(node.endswith("/generate") for node in runs)


def test_reordering_clips_keeps_their_generations_cached(project: Project):
    project.write(SCENE)
    project.render()
    arrival = '      - {id: arrival, prompt: "A lighthouse", duration: 1s}\n'
    keeper = '      - {id: keeper, prompt: "The keeper climbs", duration: 1s}\n'
    project.write(SCENE.replace(arrival + keeper, keeper + arrival))
    runs = project.planned_runs()
    assert not any(node.endswith("/generate") for node in runs)
    assert all("prompt" not in reason for reason in runs.values()), runs
