"""LTX-Video 0.9.8 render through scenekit vs the direct diffusers calls, same settings, same process.

The weights are random, at the real architecture (13B: 48 blocks of width 4096; 2B: 28 of width 2048; the
0.9.5+ VAE; the 0.9.8 spatial upscaler; T5-XXL), written in the published formats by the same builder the
tests use (`scenekit.ltxv.tiny`, given the real sizes): the single-file checkpoint with the transformer and
the VAE under Lightricks' names and their configs in its metadata, the upscaler file, the diffusers folders
of the text encoder. So scenekit loads them through its own loading code, as it would the real files.

  * scenekit: `prepare` + `render` of a one-clip spec (default 768x512, 121 frames, 24 fps) into a fresh
    cache each time, so every node runs: prompt -> pass 1 -> upsample -> pass 2 -> decode -> mp4;
  * direct: diffusers' multi-scale recipe with the same components (loaded by scenekit's pool) and settings:
    `LTXConditionPipeline(prompt=..., output_type="latent")` at the pass-1 size, `LTXLatentUpsamplePipeline`
    (AdaIN 1.0), `LTXConditionPipeline` from those latents at twice that size (re-noised to 0.9094) decoding
    with timestep 0.05 and noise 0.025, then the bilinear resize to the clip's size. The text encoder stays
    in the direct pipeline (both calls encode the prompt, as diffusers' docs do); scenekit loads it for the
    prompt node and frees it, so its figure includes reading T5 from disk (its prompt node is listed).
One warm-up of each, then `--repeats` timed pairs; medians and the ratio are printed, and whether the
frames are identical (with `--speed eager` they must be: the 2B profile; the 13B profile's tone map has no
place in the direct call, so its frames differ by it).

    python bench/ltxv_gpu.py --tiny                              # CPU dry run, seconds
    python bench/ltxv_gpu.py --profile ltxv-13b-0.9.8-distilled  # GPU, real sizes (about 40 GB on disk)
    python bench/ltxv_gpu.py --profile ltxv-2b-0.9.8-distilled --speed compiled

`--step-cache T` measures step caching instead (any profile, e.g. the dev one): a clip with
`step_cache: off` against one with `step_cache: T` (diffusers' First Block Cache on both passes), both
through scenekit: seconds, the speed-up, and how far the frames move (PSNR, max abs diff; random
weights, so only a rough guide to real ones).

    python bench/ltxv_gpu.py --profile ltxv-13b-0.9.8-dev --step-cache 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # scenekit from the checkout unless PYTHONPATH has one

from scenekit.ltxv import tiny

PROMPT = "A lighthouse on a cliff at dusk, waves breaking on the rocks below, the beam sweeping over the sea"

VAE = {
    **tiny.TINY_VAE,
    "latent_channels": 128,
    "encoder_blocks": [
        ["res_x", {"num_layers": 4}],
        ["compress_space_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 6}],
        ["compress_time_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 6}],
        ["compress_all_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 2}],
        ["compress_all_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 2}],
    ],
    "decoder_blocks": [
        ["res_x", {"num_layers": 5, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5, "inject_noise": False}],
    ],
}
T5_XXL = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
}
UPSCALER = {**tiny.TINY_UPSAMPLER, "in_channels": 128, "mid_channels": 512, "num_blocks_per_stage": 4}


def transformer(layers: int, head_dim: int) -> dict[str, Any]:
    width = 32 * head_dim
    return {
        **tiny.TINY_TRANSFORMER,
        "in_channels": 128,
        "out_channels": 128,
        "num_attention_heads": 32,
        "attention_head_dim": head_dim,
        "cross_attention_dim": width,
        "num_layers": layers,
        "caption_channels": 4096,
    }


REAL = {
    "13b": tiny.Architecture(transformer(48, 128), VAE, (128, 1024), UPSCALER, T5_XXL),
    "2b": tiny.Architecture(transformer(28, 64), VAE, (128, 1024), UPSCALER, T5_XXL),
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build_weights(folder: Path, profile: str, is_tiny: bool) -> None:
    """The profile's files at the real architecture on the GPU in bf16 (tiny on the CPU for `--tiny`)."""
    from scenekit.ltxv.settings import ltxv_settings
    from scenekit.profiles import available_profiles

    settings = ltxv_settings(available_profiles()[profile])
    arch = tiny.TINY if is_tiny else REAL["2b" if "-2b-" in profile else "13b"]
    device, dtype = ("cpu", torch.float32) if is_tiny else ("cuda", torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    tiny.build_tiny_folder(folder, 0, arch, device, dtype)
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    checkpoint, upscaler = str(settings.weights.checkpoint.file), str(settings.weights.upsampler.file)
    tiny.build_tiny_checkpoint(folder, checkpoint, 0, settings.precision.storage, arch, device, dtype)
    tiny.build_tiny_upsampler(folder, upscaler, 0, arch, device, dtype)
    torch.cuda.empty_cache() if torch.cuda.is_available() else None


def scenekit_render(
    root: Path, profile: str, size: str, frames: int, speed: str, memory: str | None = None, step_cache: str = ""
) -> tuple[float, dict, np.ndarray]:
    """One render into a fresh cache (with the clip's `step_cache` when given): wall seconds, seconds per node,
    the decoded frames."""
    from scenekit.engine.events import SilentEvents
    from scenekit.engine.session import RenderOptions, prepare, render
    from scenekit.media.video import read_frames

    project = Path(tempfile.mkdtemp(dir=root))
    (project / "scenekit.toml").write_text("")
    spec = project / "scene.yaml"
    spec.write_text(
        f"scenekit: 1\nclips: [{{id: one, model: {profile}, size: {size}, fps: 24, seed: 7, "
        f"frames: {frames}, prompt: {json.dumps(PROMPT)}{f', step_cache: {step_cache}' if step_cache else ''}}}]\n"
        "output: {file: out.mp4, preset: ultrafast}\n"
    )
    _sync()
    start = time.perf_counter()
    prepared = prepare(spec, RenderOptions(cache_dir=project / "cache", speed=speed, memory=memory))
    result = render(prepared, SilentEvents())
    _sync()
    wall = time.perf_counter() - start
    entry = prepared.cache.open(prepared.graph.node("one/decode").key)
    assert entry is not None
    return wall, result.seconds, read_frames(entry / "frames.mkv")


def direct_pipelines(folder: Path, profile: str) -> tuple[Any, Any, Any]:
    """The diffusers pipelines of the direct run, on the modules scenekit's pool loaded (an eager transformer)."""
    from diffusers import LTXConditionPipeline

    from scenekit.ltxv.pool import POOL, scheduler
    from scenekit.ltxv.settings import ltxv_settings
    from scenekit.profiles import available_profiles
    from scenekit.runtime.speed import Numerics

    settings = ltxv_settings(available_profiles()[profile])
    compute = settings.precision.compute
    precision = {"compute": compute, "storage": settings.precision.storage}
    checkpoint, upscaler = str(settings.weights.checkpoint.file), str(settings.weights.upsampler.file)
    text = POOL.text_pipeline(folder, compute)
    sampling = POOL.pipeline(folder, checkpoint, precision, Numerics(compute, compiled=False))
    pipe = LTXConditionPipeline(
        scheduler=scheduler(folder),
        vae=sampling.vae,
        text_encoder=text.text_encoder,
        tokenizer=text.tokenizer,
        transformer=sampling.transformer,
    )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # mypy resolves `diffusers.X` to diffusers' dummy placeholder class
    return pipe, POOL.upsampler(folder, checkpoint, upscaler, compute), settings


def direct_render(
    pipe: Any, upsampler: Any, settings: Any, width: int, height: int, frames: int
) -> tuple[dict[str, float], np.ndarray]:
    """diffusers' multi-scale calls: wall seconds (in all, and of each call) and frames at the clip's size."""
    from scenekit.ltxv import recipe

    w1, h1 = recipe.pass_size(width, height, settings.downscale)
    first = recipe.schedule(settings.first_pass.timesteps, settings.first_pass.steps)
    second = recipe.schedule(settings.second_pass.timesteps, settings.second_pass.steps)
    common = {"prompt": PROMPT, "num_frames": frames, "frame_rate": 24.0, "guidance_scale": 1.0}
    common["max_sequence_length"] = settings.max_sequence_length
    common["image_cond_noise_scale"] = settings.image_cond_noise_scale
    _sync()
    start = time.perf_counter()
    latents = pipe(
        **common, width=w1, height=h1, timesteps=[t * 1000 for t in first],
        generator=torch.Generator().manual_seed(7), output_type="latent",
    ).frames  # fmt: skip
    _sync()
    marks = [time.perf_counter()]
    latents = upsampler(latents=latents, adain_factor=settings.adain, output_type="latent").frames
    _sync()
    marks.append(time.perf_counter())
    video = pipe(
        **common, width=2 * w1, height=2 * h1, timesteps=[1000.0] + [t * 1000 for t in second],
        denoise_strength=(len(second) + 0.5) / (len(second) + 1), latents=latents,
        decode_timestep=settings.decode.timestep, decode_noise_scale=settings.decode.noise_scale,
        generator=torch.Generator().manual_seed(7), output_type="pt",
    ).frames[0]  # fmt: skip
    out = recipe.to_frames(video, width, height)
    _sync()
    end = time.perf_counter()
    phases = {"pass1": marks[0] - start, "upsample": marks[1] - marks[0], "pass2+decode": end - marks[1]}
    return {"total": end - start, **phases}, out


def step_cache_compare(root: Path, models: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A clip with `step_cache: off` against one with `step_cache: args.step_cache`, through scenekit, on a copy
    of the profile that takes the knob (and, with `--tiny`, has its STG blocks folded onto the tiny
    transformer's two)."""
    from scenekit.profiles import available_profiles

    folder = root / "profiles"
    folder.mkdir(exist_ok=True)
    os.environ["SCENEKIT_PROFILE_PATH"] = str(folder)
    name = f"{args.profile}-step-cache"
    profile = available_profiles()[args.profile].model_dump(mode="json")
    profile["name"] = name
    profile["knobs"] = sorted({*profile["knobs"], "step_cache"})
    for sampling in ("first_pass", "second_pass"):
        settings = profile["ltxv"][sampling]
        blocks = settings.get("guidance", {}).get("stg_blocks")
        if args.tiny and blocks:
            nested = [[b % 2 for b in entry] for entry in blocks] if isinstance(blocks[0], list) else None
            settings["guidance"]["stg_blocks"] = nested if nested is not None else [b % 2 for b in blocks]
    (folder / f"{name}.yaml").write_text(json.dumps(profile))  # JSON is YAML
    (models / name).symlink_to(models / args.profile, target_is_directory=True)
    runs: dict[str, list[float]] = {"off": [], str(args.step_cache): []}
    frames: dict[str, np.ndarray] = {}
    for repeat in range(args.repeats + 1):  # the first is a warm-up
        for threshold in runs:
            wall, _, frames[threshold] = scenekit_render(
                root, name, args.size, args.frames, args.speed, args.memory, threshold
            )
            if repeat:
                runs[threshold].append(wall)
        _log(
            f"round {repeat}: " + ", ".join(f"step_cache {t}: {times[-1]:.2f} s" for t, times in runs.items() if times)
        )
    diff = frames["off"].astype(np.float64) - frames[str(args.step_cache)].astype(np.float64)
    mse = float(np.mean(diff**2))
    slow, fast = statistics.median(runs["off"]), statistics.median(runs[str(args.step_cache)])
    return {
        "profile": args.profile,
        "step_cache": args.step_cache,
        "size": args.size,
        "frames": args.frames,
        "speed": args.speed,
        "uncached_median_s": slow,
        "cached_median_s": fast,
        "speed_up": slow / fast,
        "psnr_db": 10 * np.log10(255**2 / mse) if mse else float("inf"),
        "max_abs_diff": float(np.abs(diff).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU (a dry run)")
    parser.add_argument("--profile", default="ltxv-13b-0.9.8-distilled")
    parser.add_argument("--size", default="768x512")
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--speed", default="eager", help="scenekit's speed policy (the direct run is eager)")
    parser.add_argument("--memory", default=None, help="scenekit's memory policy (resident, offload, auto)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--step-cache", type=float, default=None, help="compare First Block Cache at this threshold")
    args = parser.parse_args()
    if args.tiny:
        os.environ["SCENEKIT_DEVICE"] = "cpu"
        args.size = "256x192" if args.size == "768x512" else args.size  # toy sizes unless asked otherwise
        args.frames = 25 if args.frames == 121 else args.frames
    from scenekit.ltxv.settings import ltxv_settings
    from scenekit.profiles import available_profiles

    distilled = ltxv_settings(available_profiles()[args.profile]).first_pass.timesteps is not None
    if args.step_cache is None and not distilled:
        parser.error("the direct call here is the distilled recipe: choose a distilled profile (or --step-cache)")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="ltxv-bench-"))
    models = root / "models"
    os.environ["SCENEKIT_MODELS"] = str(models)
    width, height = (int(v) for v in args.size.split("x"))
    _log(f"building {'tiny' if args.tiny else 'real-size'} random weights for {args.profile} in {models}")
    build_weights(models / args.profile, args.profile, args.tiny)
    if args.step_cache is not None:
        _report(step_cache_compare(root, models, args))
        return

    _log("warm-up: scenekit")
    scenekit_render(root, args.profile, args.size, args.frames, args.speed, args.memory)
    pipe, upsampler, settings = direct_pipelines(models / args.profile, args.profile)
    _log("warm-up: direct")
    direct_render(pipe, upsampler, settings, width, height, args.frames)
    ours: list[float] = []
    theirs: list[dict[str, float]] = []
    nodes: list[dict[str, float]] = []
    peaks: list[float | None] = []
    same = True
    for repeat in range(args.repeats):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        wall, seconds, frames = scenekit_render(root, args.profile, args.size, args.frames, args.speed, args.memory)
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        direct, expected = direct_render(pipe, upsampler, settings, width, height, args.frames)
        ours.append(wall)
        theirs.append(direct)
        peaks.append(peak)
        nodes.append(seconds)
        same = same and np.array_equal(frames, expected)
        _log(f"repeat {repeat + 1}: scenekit {wall:.2f} s, direct {direct['total']:.2f} s, scenekit peak {peak} GiB")
    per_node = {name: statistics.median(n[name] for n in nodes if name in n) for name in nodes[0]}
    direct_phases = {name: statistics.median(d[name] for d in theirs) for name in theirs[0]}
    steps = {"pass1": len(settings.first_pass.timesteps or []), "pass2": len(settings.second_pass.timesteps or [])}
    summary = {
        "profile": args.profile,
        "size": args.size,
        "frames": args.frames,
        "speed": args.speed,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "scenekit_median_s": statistics.median(ours),
        "memory": args.memory or "auto",
        "direct_median_s": direct_phases["total"],
        "ratio": statistics.median(ours) / direct_phases["total"],
        "scenekit_nodes_s": per_node,
        "scenekit_ms_per_step": {p: 1000 * per_node[f"one/{p}"] / n for p, n in steps.items()},
        "direct_phases_s": direct_phases,
        "direct_pass1_ms_per_step": 1000 * direct_phases["pass1"] / steps["pass1"],
        "scenekit_peak_gib": max((p for p in peaks if p is not None), default=None),
        "frames_identical": same,
    }
    _report(summary)


def _report(summary: dict[str, Any]) -> None:
    """Print the figures, and keep them in `$OUT/ltxv_gpu.json` on the device machine."""
    print(json.dumps(summary, indent=2))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "ltxv_gpu.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
