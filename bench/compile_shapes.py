"""How often the `compiled` speed compiles over a scene whose clips all have other lengths.

Renders three `ltx2-distilled` clips of 17, 25 and 33 frames (tiny random weights from
`python -m scenekit.tiny`, on the CPU: torch.compile's decisions about shapes are the same as on a GPU,
only slower to compile) and prints how many graphs dynamo compiled and each sampling node's seconds
(a node that compiled takes seconds, the others milliseconds).

    python bench/compile_shapes.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))

SPEC = """
    scenekit: 1
    defaults: {model: ltx2-distilled, size: 256x256, fps: 24}
    clips:
      - {id: a, prompt: one, frames: 17}
      - {id: b, prompt: two, frames: 25}
      - {id: c, prompt: three, frames: 33}
    output: {file: out.mp4, preset: ultrafast}
"""


def main() -> None:
    os.environ["SCENEKIT_DEVICE"] = "cpu"
    root = Path(tempfile.mkdtemp(prefix="compile_shapes_"))
    os.environ["SCENEKIT_MODELS"] = str(root / "models")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")  # a cold compile cache
    from torch._dynamo.utils import counters

    import scenekit.backends.machine as target
    from scenekit.engine.events import SilentEvents
    from scenekit.engine.session import RenderOptions, prepare, render
    from scenekit.runtime.speed import Machine
    from scenekit.tiny import build_tiny_weights

    build_tiny_weights("ltx2-distilled", root / "models" / "ltx2-distilled")
    # resolve `compiled` as a GPU would; the models still run (and compile) on the CPU
    target.this_machine = lambda device: Machine("cuda", 9.0, has_torchao=False)  # type: ignore[assignment]
    project = root / "project"
    project.mkdir()
    (project / "scenekit.toml").write_text("")
    (project / "scene.yaml").write_text(textwrap.dedent(SPEC))
    started = time.perf_counter()
    result = render(
        prepare(project / "scene.yaml", RenderOptions(cache_dir=project / "cache", speed="compiled")), SilentEvents()
    )
    print(f"render {time.perf_counter() - started:.1f} s; graphs compiled: {counters['stats']['unique_graphs']}")
    for node, seconds in result.seconds.items():
        if "/stage" in node:
            print(f"  {node:10} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
