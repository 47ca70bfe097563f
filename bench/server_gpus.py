"""`scenekit serve`'s render queue on every GPU of one host: one worker per GPU against one worker.

`--renders` independent one-clip specs of `ltx2-distilled` (real LTX-2.0 architecture, random weights, 768x512x121
as in `bench/ray_gpus.py`; `--tiny`: toy sizes at 256x256x17 on the CPU, with 2 fake devices, both `cpu`) are
posted to the app in this process (FastAPI's test client, the queue as `scenekit serve` runs it), first to a
server with one worker (the first GPU; it renders in this process), then to one with a worker per GPU, each
rendering in a child process of its own that sees only its GPU (`scenekit.server.process`; with `--tiny` the
two fake devices are put in processes too). Each server first renders one warm-up spec per worker (models
loaded and, with `--speed auto`/`compiled`, compiled), then the timed specs into a fresh cache. Printed: seconds
from the first POST to the last render done, the speed-up, transformer loads per process and thread (each
worker loads its own once), every render's state, and the time from a POST to its first node starting (issue
#13's target: < 100 ms with warm models). Renders of independent specs on N GPUs should take about 1/N of one
worker's time. The stand-in weights are built in every process that renders (the server's `worker_init`).

`--speed` defaults to `auto` (compiled on a GPU): each GPU's worker compiles in its own process.

    python bench/server_gpus.py --tiny                          # CPU dry run, 2 fake devices
    python bench/server_gpus.py --workdir /tmp/servergpus       # every GPU of the host; JSON to $OUT/server_gpus.json
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))

import ltx2_gpu_configs as configs
from ltx2_gpu import Components, Fresh, Redirect, _build, _log

SPEC = """\
scenekit: 1
name: {name}
defaults: {{model: ltx2-distilled, size: {size}, fps: 24, seed: {seed}}}
models: {{ltx2-distilled: weights}}
output: {{file: out/{name}.mp4, preset: veryfast}}
clips:
  - {{id: shot, prompt: "shot {seed}: a lighthouse at dusk, waves below", frames: {frames}}}
"""


def build_components(tiny: bool, device: str) -> Components:
    """Seeded random modules of every component but the transformer (built afresh on each load)."""
    return Components(configs.TINY if tiny else configs.REAL, device, torch.bfloat16)


def install_components(comps: Components, folders: list[Path], tiny: bool, device: str, loads: Path) -> Redirect:
    """`comps` served to scenekit's loaders for `folders`: a copy on every load, so no two workers share a module,
    and each transformer load counted in `loads` (a line in a file per process and thread)."""
    from diffusers import LTX2VideoTransformer3DModel

    cfg = configs.TINY if tiny else configs.REAL

    def transformer() -> torch.nn.Module:
        with (loads / f"pid {os.getpid()} {threading.current_thread().name}").open("a") as counted:
            counted.write("load\n")
        return _build(lambda: LTX2VideoTransformer3DModel(**cfg["transformer"]), device, torch.bfloat16, 1000)

    redirect = Redirect.for_ltx2()
    for folder in folders:
        for name, module in comps.modules.items():
            if name != "transformer":
                redirect.put(folder, name, Fresh(lambda module=module: copy.deepcopy(module)))
        redirect.put(folder, "transformer", Fresh(transformer))
        redirect.put(folder, "text_encoder", Fresh(comps.text_encoder))
    return redirect


_INSTALLED: list[Redirect] = []


def child_components(folders: list[Path], tiny: bool, loads: Path) -> None:
    """The server's `worker_init`: the stand-in weights in a render process, on its own GPU."""
    import diffusers

    from scenekit.hardware import compute_device

    diffusers.utils.logging.set_verbosity_error()
    if tiny:
        torch.set_num_threads(1)  # two fake devices share this machine's cores
    device = compute_device()
    comps = build_components(tiny, device)
    del comps.modules["transformer"]
    _INSTALLED.append(install_components(comps, folders, tiny, device, loads))


def transformer_loads(loads: Path) -> dict[str, int]:
    return {path.name: len(path.read_text().splitlines()) for path in sorted(loads.iterdir())}


def serve_and_render(
    project: Path,
    devices: list[str],
    specs: list[str],
    warmups: list[str],
    processes: bool,
    init: Callable[[], None] | None,
) -> dict:
    """Warm-ups (one per worker), then the timed specs, through a server on `devices` (its workers in
    `processes` or not); its figures."""
    from fastapi.testclient import TestClient

    from scenekit.server.app import ServerConfig, create_app

    config = ServerConfig(project=project, token=None, devices=devices, processes=processes, worker_init=init)
    with TestClient(create_app(config)) as client:

        def render_all(names: list[str]) -> tuple[float, list[dict[str, Any]]]:
            started = time.perf_counter()
            ids = [client.post("/renders", json={"path": f"{name}.yaml"}).json()["id"] for name in names]
            records = []
            for render_id in ids:
                while (record := client.get(f"/renders/{render_id}").json())["state"] in ("queued", "running"):
                    time.sleep(0.05)
                records.append(record)
            return time.perf_counter() - started, records

        render_all(warmups)
        seconds, records = render_all(specs)
        first_node = []
        for record in records:
            with client.stream("GET", f"/renders/{record['id']}/events") as response:
                lines = list(response.iter_lines())
            times: dict[str, float] = {}
            kind = ""
            for line in lines:
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    times.setdefault(kind, json.loads(line.removeprefix("data: "))["time"])
            if "node_started" in times:
                first_node.append(round((times["node_started"] - record["created"]) * 1000, 1))
    return {
        "processes": config.in_processes(),
        "seconds": round(seconds, 2),
        "states": sorted(Counter(r["state"] for r in records).items()),
        "errors": [r["errors"] for r in records if r["errors"]][:3],
        "post_to_first_node_ms": first_node,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--renders", type=int, default=None, help="timed specs (default: 4 per worker)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--speed", default="auto")
    args = parser.parse_args()
    if args.tiny:
        os.environ["SCENEKIT_DEVICE"] = "cpu"
        torch.set_num_threads(1)  # two fake devices share this machine's cores
    from scenekit.hardware import compute_device, local_devices

    device = compute_device()
    devices = ["cpu", "cpu"] if args.tiny else local_devices()
    size, frames = ("256x256", 17) if args.tiny else ("768x512", 121)
    count = args.renders or 4 * len(devices)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="server_gpus_")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(f"runtime: {{speed: {args.speed}}}\n")  # the speed of every render
    os.environ["SCENEKIT_CONFIG"] = str(root / "config.yaml")
    projects = {"one": root / "one-worker", "all": root / "all-workers"}
    for project in projects.values():
        project.mkdir(parents=True, exist_ok=True)
        (project / "scenekit.toml").write_text("")
        for seed in range(count + len(devices)):
            name = f"r{seed}" if seed < count else f"warm{seed}"
            (project / f"{name}.yaml").write_text(SPEC.format(name=name, size=size, seed=seed, frames=frames))

    import diffusers

    from scenekit.runtime.pool import MODELS

    diffusers.utils.logging.set_verbosity_error()
    folders = [p / "weights" for p in projects.values()]
    comps = build_components(args.tiny, device)
    for folder in folders:
        comps.write_folder(folder)
    del comps.modules["transformer"]
    loads = root / "loads"
    results: dict[str, Any] = {
        "env": {
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "devices": devices,
            "size": size,
            "frames": frames,
            "renders": count,
            "speed": args.speed,
            "mode": "tiny" if args.tiny else "real LTX-2.0 configs, random weights",
        }
    }
    out = Path(os.environ["OUT"]) / "server_gpus.json" if os.environ.get("OUT") else None
    specs = [f"r{seed}" for seed in range(count)]

    def run(label: str, workers: list[str], in_processes: bool, init: Callable[[], None] | None) -> None:
        loads.mkdir(exist_ok=True)
        for counted in loads.iterdir():
            counted.unlink()
        warmups = [f"warm{count + index}" for index in range(len(workers))]
        figures = serve_and_render(projects[label], workers, specs, warmups, in_processes, init)
        figures["transformer_loads"] = transformer_loads(loads)
        results[label] = figures
        _log(f"{label} ({len(workers)} worker(s)): {json.dumps(figures)}")
        if out is not None:
            out.write_text(json.dumps(results, indent=1))

    redirect = install_components(comps, folders, args.tiny, device, loads)
    run("one", devices[:1], False, None)
    redirect.modules.clear()  # renders move to child processes: free this one's first GPU for the first worker
    del comps
    with MODELS.bound(0):  # the one worker's models
        MODELS.clear()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    run("all", devices, True, functools.partial(child_components, folders, args.tiny, loads))
    results["speedup"] = round(results["one"]["seconds"] / max(results["all"]["seconds"], 1e-9), 2)
    _log(f"speed-up with {len(devices)} workers: {results['speedup']}x")
    if out is not None:
        out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
