"""Loading a real-size single-file fp8 checkpoint through scenekit's pool (`ltx2-distilled-fp8`'s path).

Builds the LTX-2.0 transformer (19B, random weights) on the GPU, writes it as Lightricks publish fp8
checkpoints: one safetensors file, `model.diffusion_model.*` keys, block weights in float8_e4m3fn with a
per-tensor `weight_scale`. Then times `POOL.transformer(...)` as a render does for that profile (read the
transformer's tensors, fold the scales, diffusers' key conversion, move to the GPU, fp8 storage), and checks
a weight against the file. Figures: file size and write time, load seconds, GPU memory of the loaded model,
peak host memory of the loading process (a fresh one).

    python bench/ltx2_load_gpu.py --tiny          # CPU dry run
    python bench/ltx2_load_gpu.py --workdir /tmp/load   # GPU; JSON to $OUT/ltx2_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))

import ltx2_gpu_configs as configs
from ltx2_gpu import _build, _log, _sync

FILE = "ltx-2-19b-distilled-fp8.safetensors"
FP8_MAX = 448.0


def write_checkpoint(transformer: torch.nn.Module, path: Path) -> dict[str, float]:
    """The transformer as a pre-quantised fp8 checkpoint in the published key format."""
    from safetensors.torch import save_file

    from scenekit.ltx2.tiny import _original_key

    tensors: dict[str, torch.Tensor] = {}
    started = time.perf_counter()
    with torch.no_grad():
        for key, value in transformer.state_dict().items():
            name = _original_key(key)
            if key.startswith("transformer_blocks.") and key.endswith(".weight") and value.ndim == 2:
                scale = value.float().abs().max().clamp(min=1e-12) / FP8_MAX
                tensors[name] = (value.float() / scale).to(torch.float8_e4m3fn).cpu()
                tensors[name[: -len(".weight")] + ".weight_scale"] = scale.reshape(()).cpu()
            else:
                tensors[name] = value.detach().cpu().contiguous()
    quantised = time.perf_counter() - started
    save_file(tensors, str(path), metadata={"format": "pt", "model_version": "2.0.0"})
    return {
        "quantise_s": round(quantised, 1),
        "write_s": round(time.perf_counter() - started - quantised, 1),
        "file_gb": round(path.stat().st_size / 1e9, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and os.environ.get("SCENEKIT_DEVICE") != "cpu" else "cpu"
    os.environ.setdefault("SCENEKIT_DEVICE", device)
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="ltx2_load_")).resolve()
    from diffusers import LTX2VideoTransformer3DModel
    from safetensors import safe_open

    from scenekit.ltx2.pool import ModelPool
    from scenekit.runtime.speed import Numerics

    if not args.load_only:  # write, then load in a fresh process so its host memory is its own
        cfg = (configs.TINY if args.tiny else configs.REAL)["transformer"]
        built = _build(lambda: LTX2VideoTransformer3DModel(**cfg), device, torch.bfloat16, seed=1000)
        built.save_config(folder / "transformer")
        written = write_checkpoint(built, folder / FILE)
        (folder / "written.json").write_text(json.dumps(written))
        _log(f"wrote {FILE}: {written}")
        del built
        subprocess.run([sys.executable, __file__, "--load-only", "--workdir", str(folder)], check=True)
        return

    result = json.loads((folder / "written.json").read_text())
    _sync()
    started = time.perf_counter()
    transformer = ModelPool().transformer(
        folder, FILE, {"compute": "bfloat16", "storage": "float8_e4m3fn"}, Numerics("bfloat16", compiled=False)
    )
    _sync()
    result["load_s"] = round(time.perf_counter() - started, 1)
    result["gpu_gb"] = round(torch.cuda.memory_allocated() / 1e9, 2) if device == "cuda" else None
    result["gpu_peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2) if device == "cuda" else None
    result["host_peak_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 1)
    key = "model.diffusion_model.transformer_blocks.0.attn1.to_q"
    with safe_open(str(folder / FILE), framework="pt") as handle:
        expected = handle.get_tensor(f"{key}.weight").float() * handle.get_tensor(f"{key}.weight_scale").float()
    loaded = transformer.transformer_blocks[0].attn1.to_q.weight
    result["weight_dtype"] = str(loaded.dtype)
    result["weight_matches_file"] = bool(
        torch.equal(loaded.float().cpu(), expected.to(torch.bfloat16).to(torch.float8_e4m3fn).float())
    )
    _log(f"loaded: {result}")
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "ltx2_load.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
