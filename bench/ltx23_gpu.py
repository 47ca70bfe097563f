"""LTX-2.3 (22B) through scenekit vs the direct diffusers calls, and the cost of switching LoRAs between clips.

Every component is built in memory at the real LTX-2.3 architecture with random weights (`--tiny`: toy
sizes in the 2.3 architecture, for a CPU dry run): the LTX-2.0 configs of `bench/ltx2_gpu_configs.py` with
LTX-2.3's transformer (gated attention, cross-attention modulation, no caption projection, prompt
modulation), its text connectors (one projection per modality before them, 8 gated layers), its x2
upsampler (no rational resampler), its video VAE (four decoder up blocks, no residual upsampling, zero padding)
and its vocoder with a bandwidth extender (48 kHz), as diffusers' LTX-2.3 conversion configures them. The
audio VAE is LTX-2.0's, as in LTX-2.3.

1. scenekit vs direct: `bench/ltx2_gpu.py`'s comparison (one clip per profile, prompt text to mp4, same
   settings and components, medians of `--repeats` pairs, frames compared) on the LTX-2.3 profiles.
2. LoRA switching: a scene of two `ltx23-distilled` clips, each with its own random LoRA of `--lora-rank` on
   every attention projection (Lightricks' format), rendered by scenekit from an empty cache. Reported: how
   often the transformer was loaded (must be once), the adapters loaded (two), the seconds each clip spent
   loading its adapter into the loaded transformer and switching the active adapters, and every node's time.
   `--memory offload --cap-gib 30` renders it with some of the transformer's blocks streamed (adapters
   loaded into streamed blocks, which the CPU dry run cannot check: there, nothing is copied on a side stream).

    python bench/ltx23_gpu.py --tiny                   # CPU dry run (SCENEKIT_DEVICE=cpu), ~1 min
    python bench/ltx23_gpu.py                          # GPU, real sizes; JSON to $OUT/ltx23_gpu.json too
    python bench/ltx23_gpu.py --skip-compare --memory offload --cap-gib 30   # GPU: LoRAs, streamed blocks

On the lent device machine (H200), with `carry: [".whl"]` as for `bench/ltx2_gpu.py`:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit;
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1;
    timeout 580 python3 bench/ltx23_gpu.py --workdir /tmp/bench --repeats 2 --budget-s 400 | tee $OUT/log.txt
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # scenekit from the checkout unless PYTHONPATH has one

from scenekit.ltx2.tiny import LTX23_TRANSFORMER, tiny_configs

import ltx2_gpu
import ltx2_gpu_configs as configs

_CONNECTORS_23 = dict(
    configs.CONNECTORS,
    video_connector_num_attention_heads=32,
    video_connector_attention_head_dim=128,
    video_connector_num_layers=8,
    video_gated_attn=True,
    audio_connector_num_attention_heads=32,
    audio_connector_attention_head_dim=64,
    audio_connector_num_layers=8,
    audio_gated_attn=True,
    per_modality_projections=True,
    video_hidden_dim=4096,
    audio_hidden_dim=2048,
    proj_bias=True,
)
_VAE_23 = dict(
    configs.VIDEO_VAE,
    block_out_channels=(256, 512, 1024, 1024),
    decoder_block_out_channels=(256, 512, 512, 1024),
    layers_per_block=(4, 6, 4, 2, 2),
    decoder_layers_per_block=(4, 6, 4, 2, 2),
    decoder_spatio_temporal_scaling=(True, True, True, True),
    decoder_inject_noise=(False, False, False, False, False),
    upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
    upsample_residual=(False, False, False, False),
    upsample_factor=(2, 2, 1, 2),
    decoder_spatial_padding_mode="zeros",
)
_VOCODER_23 = dict(  # LTX2VocoderWithBWE
    in_channels=128,
    hidden_channels=1536,
    out_channels=2,
    upsample_kernel_sizes=[11, 4, 4, 4, 4, 4],
    upsample_factors=[5, 2, 2, 2, 2, 2],
    resnet_kernel_sizes=[3, 7, 11],
    resnet_dilations=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    act_fn="snakebeta",
    antialias=True,
    final_act_fn=None,
    final_bias=False,
    bwe_in_channels=128,
    bwe_hidden_channels=512,
    bwe_out_channels=2,
    bwe_upsample_kernel_sizes=[12, 11, 4, 4, 4],
    bwe_upsample_factors=[6, 5, 2, 2, 2],
    bwe_resnet_kernel_sizes=[3, 7, 11],
    bwe_resnet_dilations=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    filter_length=512,
    hop_length=80,
    window_length=512,
    num_mel_channels=64,
    input_sampling_rate=16000,
    output_sampling_rate=48000,
)
REAL = dict(
    configs.REAL,
    vae=_VAE_23,
    vocoder=_VOCODER_23,
    transformer=dict(configs.TRANSFORMER, **LTX23_TRANSFORMER),
    connectors=_CONNECTORS_23,
    latent_upsampler=dict(configs.UPSAMPLER, use_rational_resampler=False),
)
_TINY_23 = tiny_configs("2.3")
TINY = {
    **configs.TINY,
    **_TINY_23,
    "transformer": dict(_TINY_23["transformer"], num_layers=configs.TINY["transformer"]["num_layers"]),
}
PROFILE = "ltx23-distilled"


def compare(passed: list[str]) -> None:
    """Part 1: bench/ltx2_gpu.py's scenekit-vs-direct comparison with the LTX-2.3 architecture."""
    configs.REAL, configs.TINY = REAL, TINY  # ltx2_gpu builds from these when its main runs
    out = os.environ.get("OUT")
    argv = [sys.argv[0], *passed]
    if "--profiles" not in passed:
        argv += ["--profiles", f"{PROFILE},ltx23-dev-fp8"]
    if out and "--json" not in passed:
        argv += ["--json", str(Path(out) / "ltx23_gpu.json")]
    sys.argv = argv
    ltx2_gpu.main()


class _Timed:
    """Seconds of every call of one method of an object, synchronised at both ends."""

    def __init__(self, owner: Any, name: str) -> None:
        self.calls: list[float] = []
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            ltx2_gpu._sync()
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                ltx2_gpu._sync()
                self.calls.append(round(time.perf_counter() - started, 4))

        setattr(owner, name, timed)


def lora_switch(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Part 2: two clips with different LoRAs in one render."""
    from diffusers import LTX2VideoTransformer3DModel

    from scenekit.engine.events import SilentEvents
    from scenekit.engine.session import RenderOptions, prepare, render
    from scenekit.ltx2.pool import POOL

    root = Path(args.workdir or tempfile.mkdtemp(prefix="ltx23_gpu_")) / "lora-switch"
    os.environ["SCENEKIT_MODELS"] = str(root / "models")
    comps = ltx2_gpu.Components(TINY if args.tiny else REAL, device, torch.bfloat16)
    redirect = ltx2_gpu.Redirect.for_ltx2()
    folder = (root / "models" / PROFILE).resolve()
    comps.write_folder(folder)
    for name, module in comps.modules.items():
        redirect.put(folder, name, module)
    redirect.put(folder, "text_encoder", comps.text_encoder(), once=True)
    project = root / "project"
    loras = {
        clip: ltx2_gpu.write_random_lora(
            comps.modules["transformer"], project / "loras" / f"{clip}.safetensors", args.lora_rank, seed=seed
        )
        for seed, clip in enumerate(("a", "b"), start=11)
    }
    (project / "scenekit.toml").write_text("")
    spec = project / "switch.yaml"
    spec.write_text(
        f"scenekit: 1\n"
        f"defaults: {{model: {PROFILE}, size: {args.size}, fps: 24, seed: 5}}\n"
        f"clips:\n"
        + "".join(
            f'  - {{id: {clip}, prompt: "{ltx2_gpu.PROMPT}", frames: {args.frames}, '
            f"loras: [{{file: loras/{clip}.safetensors, weight: 0.8}}]}}\n"
            for clip in loras
        )
        + "output: {file: switch.mp4}\n"
    )
    loads: list[str] = []
    fake = LTX2VideoTransformer3DModel.from_pretrained

    def counted(path: Any, *a: Any, **k: Any) -> Any:
        loads.append(str(path))
        return fake(path, *a, **k)

    LTX2VideoTransformer3DModel.from_pretrained = counted  # type: ignore[method-assign]
    adapter_load, activate = _Timed(POOL, "load_adapter"), _Timed(POOL, "activate")
    POOL.clear()
    POOL.adapter_loads = 0
    started = time.perf_counter()
    if args.cap_gib and device == "cuda":  # a smaller GPU, so that `offload` streams some blocks
        torch.cuda.set_per_process_memory_fraction(
            args.cap_gib * 2**30 / torch.cuda.get_device_properties(0).total_memory
        )
    options = RenderOptions(cache_dir=root / "cache", speed=args.speed, memory=args.memory)
    result = render(prepare(spec, options), SilentEvents())
    total = time.perf_counter() - started
    stages = [name for name in result.seconds if "/stage" in name]
    report = {
        "loras": loras,
        "total_s": round(total, 2),
        "transformer_loads": len(loads),
        "adapter_loads": POOL.adapter_loads,
        # per sampling node, in the order they ran: loading its clip's adapter (a no-op once loaded) and activating
        "stage_nodes": stages,
        "load_adapter_s": adapter_load.calls,
        "activate_s": activate.calls,
        "nodes_s": {name: round(seconds, 3) for name, seconds in result.seconds.items()},
        "peak_gb": ltx2_gpu._peak_gb(),
        "memory": args.memory,
        "cap_gib": args.cap_gib,
    }
    POOL.clear()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="toy-sized components in the 2.3 architecture (CPU)")
    parser.add_argument("--lora-rank", type=int, default=None, help="rank of the two LoRAs (default 64; --tiny: 4)")
    parser.add_argument("--skip-compare", action="store_true", help="only the LoRA switch (part 2)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--speed", default="eager")
    parser.add_argument(
        "--memory", default="auto", help="memory policy of the LoRA switch (offload: adapters on streamed blocks)"
    )
    parser.add_argument("--cap-gib", type=float, default=None, help="cap the GPU memory of the LoRA switch")
    parser.add_argument("--size", default=None)
    parser.add_argument("--frames", type=int, default=None)
    args, unknown = parser.parse_known_args()
    args.lora_rank = args.lora_rank or (4 if args.tiny else 64)
    args.size = args.size or ("256x256" if args.tiny else "768x512")
    args.frames = args.frames or (17 if args.tiny else 121)
    device = "cuda" if torch.cuda.is_available() and os.environ.get("SCENEKIT_DEVICE") != "cpu" else "cpu"
    os.environ.setdefault("SCENEKIT_DEVICE", device)
    shared = ["--speed", args.speed, "--size", args.size, "--frames", str(args.frames)]
    shared += (["--tiny"] if args.tiny else []) + (["--workdir", args.workdir] if args.workdir else [])
    if not args.skip_compare:
        compare(unknown + shared)
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    switch = lora_switch(args, device)
    ltx2_gpu._log(f"LoRA switch: {json.dumps(switch)}")
    print(
        f"\nLoRA switch ({PROFILE}, two clips, rank {args.lora_rank}): transformer loaded {switch['transformer_loads']}x, "
        f"{switch['adapter_loads']} adapters loaded; per sampling node {switch['stage_nodes']}: load_adapter "
        f"{switch['load_adapter_s']} s, activate {switch['activate_s']} s; render {switch['total_s']} s"
    )
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "ltx23_lora_switch.json").write_text(json.dumps(switch, indent=1))


if __name__ == "__main__":
    main()
