"""What `validate` accepts, `render` can do: assets, output files and sizes, chains of profiles, and
`--model preview` standing in for real models are checked before anything runs, as located errors."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from scenekit.cli import app
from scenekit.errors import SpecError

from conftest import Project


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def validate(project: Project, *options: str) -> Result:
    return run("validate", project.spec, *options)


def the_error(result: Result) -> str:
    """The one error line of an invalid spec's output (exit 2)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.output
    return errors[0]


def png_declaring(path: Path, width: int, height: int, data: bytes = b"") -> Path:
    """A PNG file whose header declares width x height RGB pixels, holding `data` as its pixel bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")
    )
    return path


IMAGE_SCENE = """
    scenekit: 1
    defaults: {size: 64x64, fps: 8}
    clips:
      - id: one
        prompt: first
        frames: 9
        conditioning:
          - {image: assets/picture.png, frame: 0}
    output: {file: out.mp4, preset: ultrafast}
"""


@pytest.mark.parametrize(
    ("width", "height", "data", "message"),
    [
        (40000, 40000, b"", "more than any model can use"),  # Pillow refuses it as a decompression bomb
        (9000, 9000, b"", "is 9000x9000 pixels, more than any model can use"),  # under Pillow's limit, over ours
        (64, 64, b"\0" * 100, "picture.png is a corrupt image"),  # the header is fine, the pixels are cut short
    ],
)
def test_an_image_too_large_or_corrupt_is_a_located_error(
    project: Project, width: int, height: int, data: bytes, message: str
):
    png_declaring(project.root / "assets" / "picture.png", width, height, data)
    project.write(IMAGE_SCENE)
    error = the_error(validate(project))
    assert "scene.yaml:8:17: error: clips[0].conditioning[0].image: " in error and message in error


def test_a_video_that_does_not_decode_is_a_located_error(project: Project):
    (project.root / "assets").mkdir()
    (project.root / "assets" / "clip.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 8)
    project.write(IMAGE_SCENE.replace("{image: assets/picture.png, frame: 0}", "{video: assets/clip.mp4, frame: 0}"))
    error = the_error(validate(project))
    assert "clips[0].conditioning[0].video: clip.mp4 is not a readable video" in error


OUTPUT_SCENE = """
    scenekit: 1
    defaults: {size: 64x64, fps: 8}
    clips:
      - {id: one, prompt: first, frames: 9}
    output: {file: OUTPUT, preset: ultrafast}
"""


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{file: out.mp4, size: 16384x16384}", "at most 8192 pixels a side"),
        ("{file: out.mp4, size: 100000x100000}", "at most 8192 pixels a side"),
        ("{file: folder.mp4}", "folder.mp4 is a folder"),
        ("{file: " + "a" * 240 + ".mp4}", "with the files written beside it"),
        ("{file: assets/clip.mp4}", "would overwrite assets/clip.mp4 (clip `one`), an input of this scene"),
        ("{file: spec.mp4}", "would overwrite the spec file spec.manifest.json"),
    ],
)
def test_an_output_that_cannot_be_written_is_a_located_error(project: Project, output: str, message: str):
    from fractions import Fraction

    import numpy as np

    from scenekit.media.video import write_frames

    (project.root / "folder.mp4").mkdir()
    (project.root / "assets").mkdir()
    write_frames(project.root / "assets" / "clip.mp4", np.zeros((2, 64, 64, 3), np.uint8), Fraction(8))
    text = OUTPUT_SCENE.replace("{file: OUTPUT, preset: ultrafast}", output)
    if "clip.mp4" in output:
        text = text.replace("frames: 9}", "frames: 9, conditioning: [{video: assets/clip.mp4}]}")
    project.spec = project.write(text, "spec.manifest.json" if "spec.mp4" in output else "scene.yaml")
    error = the_error(validate(project))
    where = "5:31: error: output.size" if "size" in output else "5:16: error: output.file"
    assert f"{project.spec.name}:{where}: " in error and message in error, error


CHAIN_SCENE = """
    scenekit: 1
    defaults: {size: 256x256, fps: 24}
    clips:
      - {id: sketch, prompt: first, frames: 17, model: preview}
      - id: real
        model: ltx2-distilled
        continue: sketch
        overlap: 9
        prompt: second
        frames: 16
        drift_control: 0.5
"""


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_drift_control_towards_a_preview_clip_is_a_located_error(project: Project, command: str):
    project.write(CHAIN_SCENE)
    error = the_error(run(command, project.spec, *(["--cache-dir", project.cache] if command == "plan" else [])))
    assert "scene.yaml:11:20: error: clips[1].drift_control: " in error
    assert "model `preview` makes `sketch` without ltx2 latents" in error


def test_a_preview_clip_continued_by_an_ltx2_clip_is_valid(project: Project):
    project.write(CHAIN_SCENE.replace("        drift_control: 0.5\n", ""))
    assert validate(project).exit_code == 0


def test_compiling_a_node_whose_input_no_node_makes_is_a_located_error(project: Project, monkeypatch):
    from scenekit.backends import get_backend
    from scenekit.graph import compile as compile_module

    def backend(name: str):
        real = get_backend(name)

        class Reading:
            def expand(self, clip, timeline, frames_of):
                expanded = real.expand(clip, timeline, frames_of)
                if clip.id == "two":
                    expanded.nodes[0].inputs["reference"] = "one/stage1"
                return expanded

        return Reading()

    project.write("""
        scenekit: 1
        defaults: {size: 64x64, fps: 8}
        clips:
          - {id: one, prompt: first, frames: 9}
          - {id: two, prompt: second, frames: 9}
    """)
    monkeypatch.setattr(compile_module, "get_backend", backend)
    with pytest.raises(SpecError) as raised:
        project.prepare()
    (issue,) = raised.value.issues
    assert issue.field == "clips[1]" and issue.location is not None and issue.location.line == 5
    assert "node `two/generate` reads `reference` from `one/stage1`, which this scene does not make" in issue.message


LTX_SCENE = """
    scenekit: 1
    defaults: {model: ltx2-distilled, size: 512x512, fps: 24}
    clips:
      - {id: one, prompt: first, frames: 17, conditioning: [{image: assets/picture.png, frame: 0}]}
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("size: 512x512", "size: size 288x256 is not a multiple of 64 for model `ltx2-distilled`"),
        ("frames: 17", "needs 305 generated frames; model `ltx2-distilled` makes at most 257"),
        ("frame: 0", "model `ltx2-distilled` places conditioning on latent frames: frame 3"),
    ],
)
def test_previewing_a_spec_checks_the_rules_of_its_clips_own_models(project: Project, change: str, message: str):
    project.image("assets/picture.png", (200, 40, 40))
    replacement = {"size: 512x512": "size: 288x256", "frames: 17": "frames: 300", "frame: 0": "frame: 3"}[change]
    project.write(LTX_SCENE.replace(change, replacement))
    error = the_error(validate(project, "--model", "preview"))
    assert message in error and "(the real render, without --model, would stop here)" in error


def test_previewing_a_valid_spec_at_another_size_is_fine(project: Project):
    project.image("assets/picture.png", (200, 40, 40))
    project.write(LTX_SCENE)
    assert validate(project, "--model", "preview", "--size", "128x96").exit_code == 0


# Each case: a spec with one problem, written as `{value}`, and the problem's value. The hint's first
# `use ...` value, put in its place, must give a valid spec.
HINTED = [
    ("scenekit: 1\nclips: [{id: a, prompt: x, frames: 17, model: ltx2-distilled, size: {value}}]\n", "256x128"),
    ("scenekit: 1\nclips: [{id: a, prompt: x, frames: 17, model: ltx2-distilled, size: {value}}]\n", "100x100"),
    ("scenekit: 1\nclips: [{id: a, prompt: x, frames: 17, model: ltx2-distilled, size: {value}}]\n", "4000x100"),
    ("scenekit: 1\nclips: [{id: a, prompt: x, frames: 17, model: ltx2-distilled, size: {value}}]\n", "4096x4096"),
    ("scenekit: 1\nclips: [{id: a, prompt: x, frames: 9, size: {value}}]\n", "100x100"),
    ("scenekit: 1\nclips: [{id: a, prompt: x, frames: 9, size: {value}}]\n", "20x5000"),
    ("scenekit: 1\nclips: [{id: a, prompt: x, frames: 9, size: 64x64}]\noutput: {size: {value}}\n", "101x99"),
    ("scenekit: 1\nclips: [{id: a, prompt: x, frames: 9, size: 64x64}]\noutput: {size: {value}}\n", "100000x50000"),
    (
        "scenekit: 1\nclips:\n  - {id: a, prompt: x, frames: 40}\n  - {id: b, prompt: y, frames: 9, continue: a, overlap: {value}}\n",
        "12",
    ),
    (
        "scenekit: 1\nclips:\n  - {id: a, prompt: x, frames: 12}\n  - {id: b, prompt: y, frames: 9, continue: a, overlap: {value}}\n",
        "17",
    ),
    (
        (
            "scenekit: 1\nclips: [{id: a, prompt: x, frames: 40, model: ltx2-distilled, size: 256x256, "
            "conditioning: [{image: p.png, frame: {value}}]}]\n"
        ),
        "3",
    ),
    (
        (
            "scenekit: 1\nclips:\n  - {id: a, prompt: x, frames: 40, model: ltx2-distilled, size: 256x256}\n"
            "  - {id: b, prompt: y, frames: 30, model: ltx2-distilled, size: 256x256, continue: a, overlap: 17, "
            "transition: {type: crossfade, duration: 4f}, conditioning: [{image: p.png, frame: {value}}]}\n"
        ),
        "1",
    ),
]


@pytest.mark.parametrize(("template", "value"), HINTED)
def test_every_hint_gives_a_valid_spec(project: Project, template: str, value: str):
    project.image("p.png", (200, 40, 40))
    project.spec.write_text(template.replace("{value}", value))
    error = validate(project).output
    hint = re.search(r"hint: use (?:frame |overlap )?(\S+?)(?: or |$)", error, re.MULTILINE)
    assert hint, error
    project.spec.write_text(template.replace("{value}", hint[1]))
    result = validate(project)
    assert result.exit_code == 0, f"the hint `use {hint[1]}` for {value} gives:\n{result.output}"


def test_size_hints_keep_the_aspect_within_the_rules():
    from scenekit.timeline import size_hint

    assert size_hint(256, 128, 64, 256, 2048) == "512x256"  # LTX-2's minimum side, twice as wide as tall
    assert size_hint(4000, 2000, 64, 256, 2048) == "2048x1024"
    assert size_hint(100, 100, 32, 64, 4096) == "96x96"
    assert size_hint(100001, 50001, 2, 2, 8192) == "8192x4096"
