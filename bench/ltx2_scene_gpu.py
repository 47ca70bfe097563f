"""A three-clip LTX-2 scene through scenekit at real size: first render, cached re-render, one clip switched.

The spec is the one issue #3 asks for, at 768x512 and 24 fps:
  * `arrival`: 121 frames on `ltx2-distilled`, conditioned on an image at frame 0;
  * `keeper`: continues `arrival` (17 frames of context) for 104 more frames, with drift control;
  * `beam`: 121 frames on `ltx2-distilled-fp8`, crossfading in over 12 frames.
Both profiles read one weights folder (as one hub snapshot serves both): the text encoder and the
prompts are shared, each profile gets its own transformer (bf16, and fp8-stored). Components are
built at the real LTX-2.0 sizes with random weights, as in `bench/ltx2_gpu.py` (`--tiny`: toy sizes).

Then:
  1. render (every node runs; per-node seconds, peak GPU memory, output frames and audio checked);
  2. render again (must run nothing);
  3. switch `beam` to `ltx2-distilled` and render (must re-run beam's sampling nodes, its segment and the
     stitch only; its prompt embedding is shared across the two profiles and stays cached).

    python bench/ltx2_scene_gpu.py --tiny                 # CPU dry run
    python bench/ltx2_scene_gpu.py --workdir /tmp/scene   # GPU (H200: two transformers resident); JSON to $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))

import ltx2_gpu_configs as configs
from ltx2_gpu import Components, Fresh, Redirect, _build, _log, _peak_gb, _peak_reset, _sync

SPEC = """\
scenekit: 1
defaults: {{model: ltx2-distilled, size: {size}, fps: 24, seed: 5}}
models: {{ltx2-distilled: weights, ltx2-distilled-fp8: weights}}
clips:
  - id: arrival
    prompt: "A lighthouse on a cliff at dusk, waves breaking on the rocks below, slow push-in"
    frames: {frames}
    conditioning: [{{image: assets/cliff.png, frame: 0, strength: 1.0}}]
  - id: keeper
    continue: arrival
    overlap: 17
    prompt: "Inside the lighthouse the keeper climbs the spiral stairs, lantern in hand"
    frames: {continued}
    drift_control: 0.5
  - id: beam
    model: {beam_model}
    prompt: "The lighthouse beam sweeps across the dark sea, seagulls crossing the light"
    frames: {frames}
    transition: {{type: crossfade, duration: 12f}}
output: {{file: out/scene.mp4}}
"""


def _write_project(root: Path, size: str, frames: int, beam_model: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scenekit.toml").write_text("")
    width, height = (int(v) for v in size.split("x"))
    assets = root / "assets"
    assets.mkdir(exist_ok=True)
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.array([0.3, 0.5, 0.9], np.float32)
    Image.fromarray(np.broadcast_to(gradient, (height, width, 3)).astype(np.uint8)).save(assets / "cliff.png")
    spec = root / "scene.yaml"
    spec.write_text(SPEC.format(size=size, frames=frames, continued=frames - 17, beam_model=beam_model))
    return spec


def _read_output(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        rate = video.average_rate
    with av.open(str(path)) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        samples = sum(f.samples for f in container.decode(audio=0)) if audio else 0
        audio_rate = audio.codec_context.sample_rate if audio else None
    return {
        "frames": frames,
        "fps": float(rate),
        "seconds": frames / float(rate),
        "audio_rate": audio_rate,
        "audio_seconds": round(samples / audio_rate, 3) if audio else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--speed", default="eager", help="speed policy (eager, as the recorded results-ltx2-scene-*.json were run)"
    )
    args = parser.parse_args()
    size, frames = ("256x256", 41) if args.tiny else ("768x512", 121)
    device = "cuda" if torch.cuda.is_available() and os.environ.get("SCENEKIT_DEVICE") != "cpu" else "cpu"
    os.environ.setdefault("SCENEKIT_DEVICE", device)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="ltx2_scene_"))

    import diffusers
    from diffusers import LTX2VideoTransformer3DModel

    diffusers.utils.logging.set_verbosity_error()
    from scenekit.engine.events import SilentEvents
    from scenekit.engine.session import RenderOptions, prepare, render
    from scenekit.ltx2.pool import POOL

    cfg = configs.TINY if args.tiny else configs.REAL
    comps = Components(cfg, device, torch.bfloat16)
    weights = (root / "project" / "weights").resolve()
    comps.write_folder(weights)
    del comps.modules["transformer"]  # each profile builds its own (below)
    redirect = Redirect.for_ltx2()
    for name, module in comps.modules.items():
        redirect.put(weights, name, module)
    redirect.put(
        weights,
        "transformer",
        Fresh(lambda: _build(lambda: LTX2VideoTransformer3DModel(**cfg["transformer"]), device, torch.bfloat16, 1000)),
    )

    spec = _write_project(root / "project", size, frames, "ltx2-distilled-fp8")
    options = RenderOptions(cache_dir=root / "cache", speed=args.speed)
    results: dict[str, Any] = {
        "env": {
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "size": size,
            "frames_per_clip": frames,
            "mode": "tiny" if args.tiny else "real LTX-2.0 configs, random weights",
        },
        "renders": [],
    }
    out = Path(os.environ["OUT"]) / "ltx2_scene.json" if os.environ.get("OUT") else None

    def run(label: str) -> dict[str, Any]:
        redirect.put(weights, "text_encoder", Fresh(comps.text_encoder), once=True)  # built only if scenekit loads it
        prepared = prepare(spec, options)
        planned = {p.node.id: p.reason for p in prepared.plan() if p.status == "run"}
        _peak_reset()
        _sync()
        started = time.perf_counter()
        result = render(prepared, SilentEvents())
        _sync()
        row = {
            "render": label,
            "total_s": round(time.perf_counter() - started, 2),
            "peak_gb": _peak_gb(),
            "ran": sorted(result.ran),
            "planned_reasons": planned,
            "nodes_s": {k: round(v, 2) for k, v in result.seconds.items()},
            "output": _read_output(result.output),
        }
        redirect.once.discard((str(weights), "text_encoder"))
        redirect.modules.pop((str(weights), "text_encoder"), None)
        results["renders"].append(row)
        _log(f"{label}: {row['total_s']} s, peak {row['peak_gb']} GB, ran {len(row['ran'])}: {row['ran']}")
        _log(f"  nodes {row['nodes_s']}")
        _log(f"  output {row['output']}")
        if out is not None:
            out.write_text(json.dumps(results, indent=1))
        return row

    first = run("first render")
    expected_frames = frames + (frames - 17) + frames - 12
    assert first["output"]["frames"] == expected_frames, first["output"]
    assert len(first["ran"]) == 19, first[
        "ran"
    ]  # 3 clips x (prompt, stage1, upsample, stage2, decode, segment) + stitch
    second = run("second render")
    assert second["ran"] == [], second["ran"]
    spec.write_text(spec.read_text().replace("model: ltx2-distilled-fp8", "model: ltx2-distilled"))
    third = run("beam switched to ltx2-distilled")
    assert set(third["ran"]) == {
        "beam/stage1",
        "beam/upsample",
        "beam/stage2",
        "beam/decode",
        "beam/segment",
        "stitch",
    }, third["ran"]
    POOL.clear()
    results["checks"] = {"frames": expected_frames, "second_render_ran": second["ran"], "switch_ran": third["ran"]}
    if out is not None:
        out.write_text(json.dumps(results, indent=1))
    print(
        json.dumps(
            {
                r["render"]: {"total_s": r["total_s"], "peak_gb": r["peak_gb"], "ran": len(r["ran"])}
                for r in results["renders"]
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
