"""How fast a clip's H.264 segment encodes: one `VideoWriter` (x264's own threads) against
`encode_in_parts` (what the segment node does: parts of a second encoded side by side, joined by stream
copy), and against splitting into other numbers of chunks.

Frames: 121 at 768x512 (an LTX-2 clip), smooth moving content with film grain, as generated video looks.
Prints frames per second and bytes for each way; run it on the machine whose cores matter:

    python bench/segment_encode.py [--frames 121] [--size 768x512] [--preset medium] [--crf 18]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np


def synthetic_frames(count: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Moving gradients and a drifting disc, with a little grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for index in range(count):
        t = index / 24
        red = 128 + 100 * np.sin(x / 90 + t)
        green = 128 + 100 * np.sin(y / 70 - 0.7 * t)
        disc = ((x - width / 2 - 150 * np.sin(t)) ** 2 + (y - height / 2) ** 2) < 80**2
        blue = np.where(disc, 230.0, 60 + 40 * np.cos((x + y) / 120 + t))
        picture = np.stack([red, green, blue], axis=-1) + rng.normal(0, 4, (height, width, 3))
        frames.append(np.clip(picture, 0, 255).astype(np.uint8))
    return frames


def encode(frames: list[np.ndarray], path: Path, fps: Fraction, crf: int, preset: str) -> int:
    from scenekit.media.video import VideoWriter

    height, width = frames[0].shape[:2]
    with VideoWriter(path, width, height, fps, lossless=False, crf=crf, preset=preset) as writer:
        for frame in frames:
            writer.write(frame)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--size", default="768x512")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--crf", type=int, default=18)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    frames = synthetic_frames(args.frames, width, height)
    folder = Path(tempfile.mkdtemp(prefix="segment_encode_"))
    fps = Fraction(24)
    print(f"{os.cpu_count()} cores; {args.frames} frames {args.size}, crf {args.crf}, preset {args.preset}")
    encode(frames[:9], folder / "warm.mp4", fps, args.crf, args.preset)
    from scenekit.media.video import encode_in_parts, part_count

    started = time.perf_counter()
    encode_in_parts(frames, folder / "parts.mp4", fps, crf=args.crf, preset=args.preset)
    seconds = time.perf_counter() - started
    print(
        f"encode_in_parts ({part_count(len(frames), fps)} parts): {seconds:.2f} s, "
        f"{len(frames) / seconds:.0f} frames/s, {(folder / 'parts.mp4').stat().st_size / 1e6:.2f} MB"
    )
    for chunks in (1, 2, 4, 8):
        size = -(-len(frames) // chunks)
        parts = [frames[start : start + size] for start in range(0, len(frames), size)]
        started = time.perf_counter()
        with ThreadPoolExecutor(len(parts)) as pool:
            sizes = list(
                pool.map(
                    lambda item: encode(item[1], folder / f"part{item[0]}.mp4", fps, args.crf, args.preset),
                    enumerate(parts),
                )
            )
        seconds = time.perf_counter() - started
        print(f"chunks {chunks}: {seconds:.2f} s, {len(frames) / seconds:.0f} frames/s, {sum(sizes) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
