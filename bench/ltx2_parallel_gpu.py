"""One LTX-2 clip across 1, 2 and 4 GPUs (`--gpus-per-clip`): seconds per step of each stage, the whole
clip, and the frames' max abs diff against one GPU, in one run.

Each group of N ranks is scenekit's own (`scenekit.runtime.parallel.RankGroup`: N processes, NCCL, GPU r
for rank r), and each rank does what `scenekit.ltx2.ranks` does for a sampling node: the LTX-2 pipeline,
its transformer split by scenekit's context-parallel plan (`scenekit.ltx2.context_parallel`, Ulysses),
then `scenekit.ltx2.recipe`. The components are built on each rank at the real LTX-2.0 (19B) architecture
with random weights (bf16, the same seed on every rank, as `bench/ltx2_gpu.py` builds them; `--tiny`: toy
sizes, a CPU dry run with gloo). The prompt embeddings are random too (no 12B text encoder: it does not
run across ranks). The clip is the `ltx2-distilled` profile's: stage 1 (8 fixed sigmas) at half size,
the x2 latent upsampler, stage 2 (3 sigmas) at full size, then the VAE decode (in tiles, on rank 0 only).

Per group: `--repeats` clips, the last one reported (the first warms up kernels and NCCL communicators);
per-step seconds are the median over a stage's steps but its first (CUDA synchronised at every step);
`clip_s` is stage 1 + upsample + stage 2 + decode. The frames of every N are compared with N=1's.

    python bench/ltx2_parallel_gpu.py --tiny                 # CPU dry run: 1 and 2 ranks, gloo
    python bench/ltx2_parallel_gpu.py                        # 1280x704x241 on 1, 2 and 4 GPUs

On the lent device machine (4 H200s, nvidia-h200-x4; ~8 min: 19B built three times over, two clips per
group), with the wheels carried as for bench/ltx2_gpu.py (`carry: [".whl"]`):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit;
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1;
    timeout 590 python3 bench/ltx2_parallel_gpu.py --json $OUT/ltx2_parallel.json | tee $OUT/log.txt
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # scenekit from the checkout unless PYTHONPATH has one

STAGE_1 = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]  # the ltx2-distilled profile's
STAGE_2 = [0.909375, 0.725, 0.421875]
PROMPT_TOKENS = 256


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _embeds(cfg: dict, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    """Random prompt embeddings of the text encoder's shape (its hidden states of every layer, stacked)."""
    text = cfg["text_encoder"]["text_config"]
    width = text["hidden_size"] * (text["num_hidden_layers"] + 1)
    generator = torch.Generator().manual_seed(11)
    return {
        "prompt_embeds": torch.randn(1, PROMPT_TOKENS, width, generator=generator).to(device, dtype),
        "prompt_attention_mask": torch.ones(1, PROMPT_TOKENS, dtype=torch.long, device=device),
    }


def _stage(pipe: Any, embeds: dict, args: dict, scale: float, sigmas: list[float], latents: Any = None) -> tuple:
    """One sampling stage; its latents, wall seconds and per-step seconds."""
    from scenekit.ltx2 import recipe

    marks = [time.perf_counter()]

    def step(done: int, total: int) -> None:
        _sync()
        marks.append(time.perf_counter())

    _sync()
    started = time.perf_counter()
    result = recipe.sample_latents(
        pipe,
        embeds,
        width=int(args["width"] * scale),
        height=int(args["height"] * scale),
        num_frames=args["frames"],
        frame_rate=24.0,
        seed=5,
        sigmas=sigmas,
        guidance=recipe.GUIDANCE_OFF,
        latents=latents,
        noise_scale=sigmas[0] if latents is not None else None,
        use_dynamic_shifting=False,
        on_step=step,
    )
    _sync()
    steps = [later - earlier for earlier, later in itertools.pairwise(marks[1:])]  # all but the first step
    return result, time.perf_counter() - started, steps


def _clip_on_rank(rank: Any, args: dict) -> dict[str, Any] | None:
    """Build the components, then render `repeats` clips; rank 0 returns the last one's figures and frames."""
    from diffusers import LTX2LatentUpsamplePipeline, LTX2Pipeline

    from scenekit.ltx2 import recipe
    from scenekit.ltx2.context_parallel import enable_context_parallel
    from scenekit.runtime.memory import tiles

    from ltx2_gpu import Components
    from ltx2_gpu_configs import REAL, TINY

    cfg = TINY if args["tiny"] else REAL
    dtype = torch.float32 if args["tiny"] else torch.bfloat16
    comps = Components(cfg, rank.device, dtype)
    parts = comps.modules
    pipe = LTX2Pipeline(
        scheduler=comps.scheduler,
        vae=parts["vae"],
        audio_vae=parts["audio_vae"],
        text_encoder=None,
        tokenizer=None,
        connectors=parts["connectors"],
        transformer=parts["transformer"],
        vocoder=parts["vocoder"],
    )
    pipe.set_progress_bar_config(disable=True)
    upsampler = LTX2LatentUpsamplePipeline(vae=parts["vae"], latent_upsampler=parts["latent_upsampler"])
    if rank.world_size > 1:
        enable_context_parallel(parts["transformer"], rank.world_size)
    embeds = _embeds(cfg, dtype, rank.device)
    figures: dict[str, Any] = {}
    frames = None
    for _ in range(args["repeats"]):
        started = time.perf_counter()
        latents, stage1_s, stage1_steps = _stage(pipe, embeds, args, 0.5, STAGE_1)
        begun = time.perf_counter()
        latents["video"] = recipe.upsample_latents(upsampler, latents["video"])
        _sync()
        upsample_s = time.perf_counter() - begun
        latents, stage2_s, stage2_steps = _stage(pipe, embeds, args, 1.0, STAGE_2, latents)
        decode_s = 0.0
        if rank.rank == 0:
            begun = time.perf_counter()
            with tiles(pipe.vae, not args["tiny"]):
                frames, _, _ = recipe.decode(pipe, latents, decode_timestep=0.0, decode_noise_scale=None, seed=5)
            _sync()
            decode_s = time.perf_counter() - begun
        figures = {
            "stage1_s": stage1_s,
            "stage1_step_s": statistics.median(stage1_steps),
            "upsample_s": upsample_s,
            "stage2_s": stage2_s,
            "stage2_step_s": statistics.median(stage2_steps),
            "decode_s": decode_s,
            "clip_s": time.perf_counter() - started,
            "peak_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None,
        }
    if rank.rank != 0:
        return None
    return {**figures, "frames": frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU (gloo)")
    parser.add_argument("--size", default=None, help="WxH (default 1280x704; --tiny: 256x256)")
    parser.add_argument("--frames", type=int, default=None, help="8k+1 frames (default 241; --tiny: 17)")
    parser.add_argument("--gpus", default=None, help="group sizes, comma-separated (default 1,2,4; --tiny: 1,2)")
    parser.add_argument("--repeats", type=int, default=2, help="clips per group; the last is reported")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    cli = parser.parse_args()
    if cli.tiny:
        import os

        os.environ["SCENEKIT_DEVICE"] = "cpu"
        torch.set_num_threads(1)  # ranks fork (fast) only from a process with one OpenMP thread
    from scenekit.runtime.parallel import RankGroup

    width, height = (int(v) for v in (cli.size or ("256x256" if cli.tiny else "1280x704")).split("x"))
    args = {"tiny": cli.tiny, "width": width, "height": height, "repeats": cli.repeats}
    args["frames"] = cli.frames or (17 if cli.tiny else 241)
    sizes = [int(n) for n in (cli.gpus or ("1,2" if cli.tiny else "1,2,4")).split(",")]
    _log(f"{width}x{height}x{args['frames']}, groups of {sizes}, {cli.repeats} clip(s) each")
    results: dict[int, dict[str, Any]] = {}
    reference = None
    for size in sizes:
        group = RankGroup(size)
        try:
            result = group.run(_clip_on_rank, args)
        finally:
            group.close()
        frames = result.pop("frames")
        if reference is None:
            reference = frames
        result["max_abs_diff_vs_1"] = int(np.abs(frames.astype(np.int16) - reference.astype(np.int16)).max())
        results[size] = result
        one = results[sizes[0]]
        speedup = {key: one[key] / result[key] for key in ("stage1_step_s", "stage2_step_s", "clip_s")}
        _log(
            f"{size} GPU(s): stage 1 {result['stage1_step_s']:.3f} s/step, stage 2 {result['stage2_step_s']:.3f} "
            f"s/step, clip {result['clip_s']:.2f} s (decode {result['decode_s']:.2f}); speed-up "
            + ", ".join(f"{key} {value:.2f}x" for key, value in speedup.items())
            + f"; frames max abs diff {result['max_abs_diff_vs_1']} of 255"
        )
        result["speedup_vs_first"] = speedup
    print(json.dumps(results, indent=2))
    if cli.json:
        cli.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
