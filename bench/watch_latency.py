"""Watch-mode figures: save -> first re-run node starting, and re-render time after editing one of
five clips compared with the full render of the five.

Run: python bench/watch_latency.py [--size 768x512] [--seconds 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from scenekit.engine.events import SilentEvents
from scenekit.engine.session import RenderOptions
from scenekit.watch.loop import WatchLoop


def scene(size: str, seconds: float, take: int) -> str:
    clips = "\n".join(
        f"  - {{id: shot{i}, prompt: 'Shot {i}{f' take {take}' if i == 2 else ''}', duration: {seconds}s}}"
        for i in range(5)
    )
    return f"scenekit: 1\ndefaults: {{size: {size}, fps: 24}}\nclips:\n{clips}\noutput: {{file: out.mp4}}\n"


class Timing(SilentEvents):
    """Times of the first node start and of each finished render pass."""

    def __init__(self) -> None:
        self.first_start: float | None = None
        self.done = threading.Event()
        self.ran: list[str] = []

    def node_started(self, node, position, total) -> None:
        if self.first_start is None:
            self.first_start = time.perf_counter()

    def rendered(self, label, result, seconds) -> None:
        self.ran = result.ran
        self.done.set()

    def state(self, text) -> None: ...
    def changed(self, changes, reruns) -> None: ...
    def invalid(self, issues) -> None: ...
    def cancelled(self, label) -> None: ...
    def failed(self, label, message) -> None: ...


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="768x512")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "scenekit.toml").write_text("")
        spec = root / "scene.yaml"
        spec.write_text(scene(args.size, args.seconds, 0))
        timing = Timing()
        loop = WatchLoop(spec, RenderOptions(cache_dir=root / "cache"), timing, lambda: timing)
        started = time.perf_counter()
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        timing.done.wait()
        full = time.perf_counter() - started
        latencies, rerenders = [], []
        for take in range(1, args.repeats + 1):
            timing.first_start, timing.done = None, threading.Event()
            saved = time.perf_counter()
            spec.write_text(scene(args.size, args.seconds, take))
            timing.done.wait()
            latencies.append(timing.first_start - saved)
            rerenders.append(time.perf_counter() - saved)
        loop.stop()
        thread.join()
    print(f"scene: 5 clips x {args.seconds:g}s at {args.size}, 24 fps, preview model")
    print(f"full render (5 clips, 5 segments, stitch) {full:6.2f} s")
    print(
        f"save -> first re-run node started  median {statistics.median(latencies) * 1000:6.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    print(
        f"re-render after editing clip 3     median {statistics.median(rerenders):6.2f} s ({', '.join(sorted(timing.ran))})"
    )
    print(f"edit / full                        {statistics.median(rerenders) / full:6.2f}")


if __name__ == "__main__":
    main()
