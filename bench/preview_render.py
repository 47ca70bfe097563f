"""Timing figures for the preview path: full render, cached re-render, re-render after one edit.

Run: python bench/preview_render.py [--clips 5] [--seconds 4] [--size 768x512]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from scenekit.engine.events import SilentEvents
from scenekit.engine.session import RenderOptions, prepare, render


def scene(clips: int, seconds: float, size: str, first_prompt: str) -> str:
    lines = [f"scenekit: 1\ndefaults: {{size: {size}, fps: 24}}\nclips:"]
    for i in range(clips):
        prompt = first_prompt if i == 0 else f"Shot {i}: the camera drifts over the sea"
        extra = ", continue: shot0, overlap: 17" if i == 1 else (", transition: crossfade" if i == 2 else "")
        lines.append(f"  - {{id: shot{i}, prompt: '{prompt}', duration: {seconds}s{extra}}}")
    lines.append("output: {file: out.mp4}")
    return "\n".join(lines) + "\n"


def timed(spec: Path, cache: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = render(prepare(spec, RenderOptions(cache_dir=cache)), SilentEvents())
    return time.perf_counter() - started, len(result.ran)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", default="768x512")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "scenekit.toml").write_text("")
        spec, cache = root / "scene.yaml", root / "cache"
        spec.write_text(scene(args.clips, args.seconds, args.size, "A lighthouse at dusk"))
        full, ran_full = timed(spec, cache)
        cached, ran_cached = timed(spec, cache)
        spec.write_text(scene(args.clips, args.seconds, args.size, "A lighthouse at dawn"))
        edited, ran_edited = timed(spec, cache)
    print(f"scene: {args.clips} clips x {args.seconds:g}s at {args.size}, 24 fps")
    print(f"full render      {full:7.2f} s  ({ran_full} nodes)")
    print(f"cached re-render {cached:7.2f} s  ({ran_cached} nodes)")
    print(
        f"edit clip 0      {edited:7.2f} s  ({ran_edited} nodes: clip 0, its continuation, the segments that show them, stitch)"
    )
    print(f"edit / full      {edited / full:7.2f}")


if __name__ == "__main__":
    main()
