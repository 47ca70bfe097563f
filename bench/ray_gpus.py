"""LTX-2 clips in parallel on every GPU of one host: the local executor on one GPU against Ray on all of them.

Two scenes of `ltx2-distilled` clips at 768x512x121 (real LTX-2.0 architecture, random weights, as in
`bench/ltx2_scene_gpu.py`; `--tiny`: toy sizes at 256x256x17 on the CPU, with `--fake-gpus` fake GPUs):
  * `independent`: 8 clips, no clip depends on another;
  * `chains`: two chains of 4 clips, each clip continuing the one before (17 frames of context).
Each scene renders into a fresh cache, first with the local executor (this process, GPU 0), then with
`--executor ray` (one `GpuWorker` actor per GPU, each building the same seeded random components in its
own process). Before timing, each executor renders a warm-up scene (one short clip per GPU it uses), so
both time sampling, not building weights. Printed per scene and executor: seconds, the speed-up over the
local executor, model loads per GPU (transformers, text encoders), peak memory per GPU, whether the
output bytes equal the local render's. Targets (issue #14): >= 1.9x on 2 GPUs and >= 3.6x on 4 for the
independent clips; the chains are bound by their critical path (4 clips in order: at best 2x).

    python bench/ray_gpus.py --tiny                        # CPU dry run, 2 fake GPUs
    python bench/ray_gpus.py --workdir /tmp/raygpus        # every GPU of the host; JSON to $OUT/ray_gpus.json

`--speed` defaults to eager (outputs equal across executors bit for bit; `compiled` would compile once per
actor). `--gpus N` uses N of the host's GPUs for Ray (1: the one-actor overhead against the local executor).
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))

from scenekit.engine.ray_worker import GpuWorker

import ltx2_gpu_configs as configs
from ltx2_gpu import Components, Fresh, Redirect, _build, _log

BENCH = Path(__file__).resolve().parent
CFG_ENV, WEIGHTS_ENV = "SCENEKIT_BENCH_CONFIG", "SCENEKIT_BENCH_WEIGHTS"

SCENE_HEAD = """\
scenekit: 1
defaults: {{model: ltx2-distilled, size: {size}, fps: 24, seed: 11}}
models: {{ltx2-distilled: weights}}
output: {{file: out/{name}.mp4, preset: veryfast}}
clips:
"""


def scene(name: str, size: str, frames: int, overlap: int, chains: int, length: int) -> str:
    """`chains` chains of `length` clips (length 1: independent clips)."""
    text = SCENE_HEAD.format(size=size, name=name)
    for chain in range(chains):
        for position in range(length):
            clip = f"c{chain}_{position}"
            text += (
                f'  - {{id: {clip}, prompt: "shot {position} of story {chain}, a lighthouse at dusk", frames: {frames}'
            )
            if position:
                text += f", continue: c{chain}_{position - 1}, overlap: {overlap}"
            text += "}\n"
    return text


def install_components(weights: Path, tiny: bool, device: str) -> Redirect:
    """Seeded random components at the bench's sizes, served to scenekit's loaders for `weights`."""
    from diffusers import LTX2VideoTransformer3DModel

    cfg = configs.TINY if tiny else configs.REAL
    comps = Components(cfg, device, torch.bfloat16)
    if not (weights / "model_index.json").is_file():
        comps.write_folder(weights)
    del comps.modules["transformer"]  # built afresh on each load (below), as a real load would be
    redirect = Redirect.for_ltx2()
    for name, module in comps.modules.items():
        redirect.put(weights, name, module)
    redirect.put(
        weights,
        "transformer",
        Fresh(lambda: _build(lambda: LTX2VideoTransformer3DModel(**cfg["transformer"]), device, torch.bfloat16, 1000)),
    )
    redirect.put(weights, "text_encoder", Fresh(comps.text_encoder))
    return redirect


def _device() -> str:
    return "cuda" if torch.cuda.is_available() and os.environ.get("SCENEKIT_DEVICE") != "cpu" else "cpu"


def _peak() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 1e9, 2) if _device() == "cuda" else None


def _reset_peak() -> None:
    if _device() == "cuda":
        torch.cuda.reset_peak_memory_stats()


class BenchWorker(GpuWorker):
    """The real GPU worker, with the bench's random components served to its loaders, and its peak memory."""

    def __init__(self, name: str, gpus_per_clip: int = 1):
        super().__init__(name, gpus_per_clip)
        self.redirect = install_components(Path(os.environ[WEIGHTS_ENV]), os.environ[CFG_ENV] == "tiny", _device())

    def peak_gb(self) -> float | None:
        return _peak()

    def reset_peak(self) -> None:
        _reset_peak()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--fake-gpus", type=int, default=2, help="with --tiny: fake GPUs for Ray")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs for Ray (default: all)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--speed", default="eager")
    args = parser.parse_args()
    if args.tiny:
        os.environ["SCENEKIT_DEVICE"] = "cpu"
    device = _device()
    size, frames, overlap = ("256x256", 17, 9) if args.tiny else ("768x512", 121, 17)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="ray_gpus_")).resolve()
    project = root / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "scenekit.toml").write_text("")
    weights = project / "weights"
    os.environ.update({CFG_ENV: "tiny" if args.tiny else "real", WEIGHTS_ENV: str(weights)})
    gpus = args.fake_gpus if args.tiny else (args.gpus or torch.cuda.device_count())
    scenes = {
        "independent": scene("independent", size, frames, overlap, chains=8, length=1),
        "chains": scene("chains", size, frames, overlap, chains=2, length=4),
    }
    warm = {n: scene(f"warmup{n}", size, 17 if not args.tiny else 9, overlap, chains=n, length=1) for n in (1, gpus)}
    for name, text in {**scenes, **{f"warmup{n}": t for n, t in warm.items()}}.items():
        (project / f"{name}.yaml").write_text(text)

    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    from scenekit.engine.events import SilentEvents
    from scenekit.engine.session import RenderOptions, prepare, render
    from scenekit.ltx2.pool import POOL

    results: dict[str, Any] = {
        "env": {
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "gpus": gpus,
            "size": size,
            "frames_per_clip": frames,
            "speed": args.speed,
            "mode": "tiny" if args.tiny else "real LTX-2.0 configs, random weights",
        },
        "runs": [],
    }
    out = Path(os.environ["OUT"]) / "ray_gpus.json" if os.environ.get("OUT") else None

    def run(name: str, executor: str, cache: str) -> tuple[float, Path]:
        options = RenderOptions(
            cache_dir=root / cache, speed=args.speed, executor=executor, output=root / "out" / f"{name}.{cache}.mp4"
        )
        prepared = prepare(project / f"{name}.yaml", options)
        started = time.perf_counter()
        result = render(prepared, SilentEvents())
        return time.perf_counter() - started, result.output

    # local executor, one GPU, in this process
    redirect = install_components(weights, args.tiny, device)
    run("warmup1", "local", "local-warmup")
    local: dict[str, dict[str, Any]] = {}
    for name in scenes:
        _reset_peak()
        seconds, output = run(name, "local", f"local-{name}")
        local[name] = {"seconds": round(seconds, 2), "peak_gb": [_peak()], "output": output}
        results["local"] = {k: {"seconds": v["seconds"], "peak_gb": v["peak_gb"][0]} for k, v in local.items()}
        if out is not None:
            out.write_text(json.dumps(results, indent=1))
        _log(f"local {name}: {seconds:.2f} s, peak {_peak()} GB")
    POOL.clear()
    del redirect
    if device == "cuda":
        torch.cuda.empty_cache()

    # Ray, one actor per GPU
    import ray

    from scenekit.engine.ray_executor import worker_pool

    ray.init(num_gpus=gpus, include_dashboard=False, **({"num_cpus": 2} if args.tiny else {}))
    started = time.perf_counter()
    env = {
        k: v for k, v in os.environ.items() if k.startswith(("SCENEKIT_", "OMP_", "NCCL_", "HF_", "NVSHMEM_", "TORCH_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), str(BENCH.parent), os.environ.get("PYTHONPATH", "")])
    pool = worker_pool(env=env, worker=BenchWorker)
    _log(
        f"Ray: {len(pool.workers)} actors ({', '.join(w.where for w in pool.workers)}) up in {time.perf_counter() - started:.1f}s"
    )
    run(f"warmup{gpus}", "ray", "ray-warmup")
    results["ray_warmup_loads_per_gpu"] = pool.loads()  # each actor loads its models once, here
    for name in scenes:
        ray.get([actor.reset_peak.remote() for actor in pool.actors])
        before = pool.loads()
        seconds, output = run(name, "ray", f"ray-{name}")
        loads = [{r: n - b.get(r, 0) for r, n in now.items()} for now, b in zip(pool.loads(), before, strict=True)]
        peaks = ray.get([actor.peak_gb.remote() for actor in pool.actors])
        row = {
            "scene": name,
            "local_s": local[name]["seconds"],
            "ray_s": round(seconds, 2),
            "speedup": round(local[name]["seconds"] / seconds, 2),
            "ray_loads_per_gpu": loads,
            "ray_peak_gb_per_gpu": peaks,
            "local_peak_gb": local[name]["peak_gb"][0],
            "same_bytes_as_local": output.read_bytes() == local[name]["output"].read_bytes(),
        }
        results["runs"].append(row)
        _log(json.dumps(row))
        if out is not None:
            out.write_text(json.dumps(results, indent=1))
    print(f"{'scene':12} {'local 1 GPU':>12} {'ray ' + str(gpus) + ' GPUs':>12} {'speed-up':>9}  same bytes")
    for row in results["runs"]:
        print(
            f"{row['scene']:12} {row['local_s']:>11.2f}s {row['ray_s']:>11.2f}s {row['speedup']:>8.2f}x  {row['same_bytes_as_local']}"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
