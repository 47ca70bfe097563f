"""LTX-2 on a smaller GPU: the same clip rendered resident, then under a memory cap with a memory policy.

Components are built as in `bench/ltx2_gpu.py` (real LTX-2.0 architecture, random weights). The clip is
rendered once with every model resident on the GPU (a warm-up, then a timed run), then every built module
moves to the CPU, the process is capped with `torch.cuda.set_per_process_memory_fraction` (how a 24-32 GB
card is emulated on an H200) and the same clip renders again under `--memory` (default `auto`, which
must choose to offload): once with the loading (weights pinned in CPU memory), then again with the models
loaded, as every later clip of a scene runs. Reported: seconds, peak GPU memory, the offloaded/resident
time ratio of the second (steady) capped render, and the largest frame difference between the resident
and capped renders (offloading moves weights, never changes them: 0).

    python bench/ltx2_memory_gpu.py --tiny                               # CPU dry run
    python bench/ltx2_memory_gpu.py --profile ltx2-distilled --cap-gb 30  # GPU
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))

import ltx2_gpu as base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--profile", default="ltx2-distilled")
    parser.add_argument("--cap-gb", type=float, default=30.0, help="GPU memory the process may use (GiB)")
    parser.add_argument("--memory", default="auto", help="memory policy of the capped render")
    parser.add_argument("--speed", default="eager")
    parser.add_argument("--size", default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    args.size = args.size or ("256x256" if args.tiny else "768x512")
    args.frames = args.frames or (17 if args.tiny else 121)
    device = "cuda" if torch.cuda.is_available() and os.environ.get("SCENEKIT_DEVICE") != "cpu" else "cpu"
    os.environ.setdefault("SCENEKIT_DEVICE", device)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="ltx2_memory_"))
    os.environ["SCENEKIT_MODELS"] = str(root / "models")

    comps = base.Components(base.configs.TINY if args.tiny else base.configs.REAL, device, torch.bfloat16)
    redirect = base.Redirect.for_ltx2()
    folder = (root / "models" / args.profile).resolve()
    comps.write_folder(folder)
    for name, module in comps.modules.items():
        redirect.put(folder, name, module)
    bench = base.Bench(args, root, comps, redirect)
    from scenekit.ltx2.pool import POOL

    rows = {}
    args.memory, capped_memory = "resident", args.memory
    bench.scenekit(args.profile, None, "warmup")
    rows["resident"], resident_frames = bench.scenekit(args.profile, None, "resident")
    base._log(f"resident: {rows['resident']['total_s']} s, peak {rows['resident']['peak_gb']} GB")

    POOL.clear()
    # The capped renders load fresh modules, as from disk: the resident render's hooks (layerwise casting)
    # stay on the modules it used, and each render's text encoder is released after its prompts.
    from diffusers import LTX2VideoTransformer3DModel

    cfg = base.configs.TINY if args.tiny else base.configs.REAL
    transformer = base._build(
        functools.partial(LTX2VideoTransformer3DModel, **cfg["transformer"]), device, torch.bfloat16, seed=1000
    )
    comps.modules["transformer"] = transformer
    redirect.put(folder, "transformer", transformer)
    build_text_encoder = comps.text_encoder

    def text_encoder_on_cpu() -> torch.nn.Module:
        """A fresh text encoder, built on the GPU outside the cap, kept on the CPU."""
        if device == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
        model = build_text_encoder().to("cpu")
        if device == "cuda":
            torch.cuda.set_per_process_memory_fraction(args.cap_gb * 2**30 / total)
            torch.cuda.empty_cache()
        return model

    comps.text_encoder = text_encoder_on_cpu
    for module in comps.modules.values():
        module.to("cpu")
    base._peak_reset()
    total = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else 0
    if device == "cuda":
        torch.cuda.set_per_process_memory_fraction(args.cap_gb * 2**30 / total)
    args.memory = capped_memory
    rows["capped_first"], _ = bench.scenekit(args.profile, None, "capped_first")  # loads, pins, streams
    base._peak_reset()
    rows["capped"], capped_frames = bench.scenekit(args.profile, None, "capped")  # models loaded, as for clip 2+
    for tag in ("capped_first", "capped"):
        row = rows[tag]
        base._log(f"{tag} at {args.cap_gb} GiB ({args.memory}): {row['total_s']} s, peak {row['peak_gb']} GB")
    same = resident_frames is not None and capped_frames is not None
    diff = int(np.abs(resident_frames.astype(np.int16) - capped_frames.astype(np.int16)).max()) if same else None
    summary = {
        "profile": args.profile,
        "cap_gib": args.cap_gb,
        "memory": args.memory,
        "speed": args.speed,
        "resident_s": rows["resident"]["total_s"],
        "capped_first_s": rows["capped_first"]["total_s"],
        "capped_s": rows["capped"]["total_s"],
        "ratio": round(rows["capped"]["total_s"] / rows["resident"]["total_s"], 3),
        "resident_peak_gb": rows["resident"]["peak_gb"],
        "capped_peak_gb": rows["capped"]["peak_gb"],
        "frames_max_abs_diff": diff,
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    out = os.environ.get("OUT")
    if out:
        Path(out, f"ltx2_memory_{args.profile}.json").write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
