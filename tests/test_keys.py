"""Cache keys do not depend on key order, comments or formatting, and do depend on what a node computes."""

from __future__ import annotations

from scenekit.graph.nodes import Node, canonical_json

from conftest import Project

SCENE = """
    scenekit: 1
    name: demo
    defaults: {model: preview, size: 128x96, fps: 12, seed: 3}
    clips:
      - id: arrival
        prompt: "A lighthouse"
        duration: 2s
        conditioning:
          - {image: red.png, frame: 0, strength: 1.0}
      - {id: beam, prompt: "The beam", frames: 20, transition: {type: crossfade, duration: 0.5s}}
    output: {file: out/demo.mp4, crf: 10, preset: ultrafast}
"""
REORDERED = """
    # every mapping in the other order, with comments and another layout
    output:
      preset: ultrafast
      crf: 10
      file: out/demo.mp4
    clips:
      - conditioning: [{strength: 1.0, frame: 0, image: red.png}]   # the first clip
        duration: 2s
        prompt: "A lighthouse"
        id: arrival
      - transition: {duration: 0.5s, type: crossfade}
        frames: 20
        prompt: "The beam"
        id: beam
    defaults: {seed: 3, fps: 12, size: 128x96, model: preview}
    name: demo
    scenekit: 1
"""


def test_canonical_json_does_not_depend_on_insertion_order():
    one = {"b": 1, "a": {"y": [{"q": 1, "p": 2}], "x": 3}}
    other = {"a": {"x": 3, "y": [{"p": 2, "q": 1}]}, "b": 1}
    assert list(one) != list(other) and canonical_json(one) == canonical_json(other)
    assert canonical_json(one) != canonical_json({**other, "b": 2})  # control: a value change shows


def test_node_keys_do_not_depend_on_the_order_params_were_built_in():
    def key(params: dict, version: int = 1) -> str:
        return Node("x", "op", params).compute_key(version, {"clip": "k1", "previous": "k2"})

    params = {"prompt": "a", "seed": 3, "transition": {"type": "crossfade", "frames": 6}}
    reordered = {"transition": {"frames": 6, "type": "crossfade"}, "seed": 3, "prompt": "a"}
    assert key(params) == key(reordered)
    assert key(params) != key({**params, "seed": 4}) and key(params) != key(params, version=2)  # controls


def test_key_order_comments_and_formatting_of_the_spec_do_not_change_keys(project: Project):
    project.image("red.png", (220, 30, 30))

    def keys(text: str) -> dict[str, str]:
        project.write(text)
        return {n.id: n.key for n in project.prepare().graph.ordered()}

    before = keys(SCENE)
    assert keys(REORDERED) == before
    reseeded = keys(SCENE.replace("seed: 3", "seed: 4"))  # control: a real change changes the keys
    assert (
        reseeded["arrival/generate"] != before["arrival/generate"]
        and reseeded["beam/generate"] != before["beam/generate"]
    )
