"""LTX-2 render through scenekit vs the direct diffusers calls, same settings, same process, same components.

Every component is built in memory at the real LTX-2.0 (19B) architecture with random weights, directly
on the device in bf16 (`--tiny`: toy sizes, for a CPU dry run in seconds). Only small config files go to
disk: `$SCENEKIT_MODELS/<profile>` gets `model_index.json` and the components' configs, so scenekit
resolves its weights folder as usual; the components' `from_pretrained` is redirected to the built modules
(for that folder only), so scenekit's own loading code (`scenekit.ltx2.pool`) runs unchanged, including
its fp8 layerwise casting of the transformer for `ltx2-dev-fp8`.

For each profile:
  * scenekit: `prepare` + `render` of a spec with one clip (default 768x512, 121 frames, 24 fps), with a
    fresh cache each time, so every node runs: prompt -> stage 1 -> upsample -> stage 2 -> decode -> mp4;
  * direct: the diffusers two-stage recipe (docs `ltx2.md`) with the same settings and components:
    `LTX2Pipeline(prompt=..., output_type="latent")` at half size, `LTX2LatentUpsamplePipeline`, a second
    `LTX2Pipeline` call at full size from those latents (fixed stage-2 sigmas, `noise_scale`), decoding
    to numpy. The text encoder is part of the pipeline (both calls get the prompt, as in the docs).
One short warm-up of each first, then `--repeats` timed (scenekit, direct) pairs; medians are reported.

Profiles whose stage 2 uses the distilled LoRA (`ltx2-dev-fp8`) get a random one of the real rank (384) on
every attention projection, written in Lightricks' published format into the weights folder: scenekit loads
it through its pool, the direct run enables the same adapter for its stage-2 call (the docs' recipe).

Measured: wall seconds (`torch.cuda.synchronize` at the edges); transformer time from CUDA events around
every transformer forward (forward pre/post hooks), summed per stage and divided by the stage's steps;
peak memory `torch.cuda.max_memory_allocated` (reset before each run); scenekit's per-node seconds.

    python bench/ltx2_gpu.py --tiny                    # CPU dry run (SCENEKIT_DEVICE=cpu)
    python bench/ltx2_gpu.py                           # GPU, real sizes; JSON to $OUT/ltx2_gpu.json too

On the lent device machine (H200, ~4 min; diffusers, pydantic, ruamel.yaml, av, importlib_metadata and
their needs carried as wheels in `.whl`, see the device README), with `carry: [".whl"]`:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit;
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1;
    timeout 555 python3 bench/ltx2_gpu.py --workdir /tmp/bench --repeats 2 --budget-s 420 | tee $OUT/log.txt

Peak memory needs an H200 (about 75 GB with the 19B transformer and the 12B text encoder resident).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # scenekit from the checkout unless PYTHONPATH has one

from scenekit.runtime.speed import FP8_ROWWISE

import ltx2_gpu_configs as configs

PROMPT = (
    "A lighthouse on a cliff at dusk, waves breaking on the rocks below, the beam sweeping over the sea, "
    "seagulls circling, cinematic, slow push-in"
)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- components -------------------------------------------------------------------------------------


def _build(
    factory: Callable[[], torch.nn.Module], device: str, dtype: torch.dtype, seed: int, cast: bool = True
) -> torch.nn.Module:
    """Construct on the device with `dtype` as default dtype (what from_pretrained(torch_dtype=...) gives),
    then give any non-finite parameter (torch.empty leftovers) small random values."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        try:
            with torch.device(device):
                module = factory()
        except NotImplementedError:  # e.g. the upsampler's integer matmul has no CUDA kernel: build on the CPU
            torch.manual_seed(seed)
            module = factory().to(device)
    finally:
        torch.set_default_dtype(previous)
    if cast:
        module = module.to(device=device, dtype=dtype)
    with torch.no_grad():
        for tensor in module.parameters():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                tensor.normal_(0.0, 0.02)
    module.requires_grad_(False)
    return module.eval()


class Components:
    """The built modules, and how to build a fresh text encoder."""

    def __init__(self, cfg: dict, device: str, dtype: torch.dtype):
        from diffusers import (
            AutoencoderKLLTX2Audio,
            AutoencoderKLLTX2Video,
            FlowMatchEulerDiscreteScheduler,
            LTX2VideoTransformer3DModel,
        )
        from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2Vocoder
        from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE

        from scenekit.ltx2.tiny import _tokenizer

        self.cfg, self.device, self.dtype = cfg, device, dtype
        self.seconds: dict[str, float] = {}
        self.tokenizer, vocab = _tokenizer()
        te_cfg = json.loads(json.dumps(cfg["text_encoder"]))
        if te_cfg["text_config"]["vocab_size"] is None:
            te_cfg["text_config"]["vocab_size"] = vocab
        self.te_cfg = te_cfg
        self.scheduler_cfg = cfg["scheduler"]
        self.scheduler = FlowMatchEulerDiscreteScheduler(**cfg["scheduler"])
        parts = [
            ("transformer", LTX2VideoTransformer3DModel),
            ("connectors", LTX2TextConnectors),
            ("vae", AutoencoderKLLTX2Video),
            ("audio_vae", AutoencoderKLLTX2Audio),
            ("vocoder", LTX2VocoderWithBWE if "bwe_in_channels" in cfg["vocoder"] else LTX2Vocoder),  # 2.3: BWE
            ("latent_upsampler", LTX2LatentUpsamplerModel),
        ]
        self.modules: dict[str, torch.nn.Module] = {}
        for salt, (name, cls) in enumerate(parts):
            started = time.perf_counter()
            self.modules[name] = _build(functools.partial(cls, **cfg[name]), device, dtype, seed=1000 + salt)
            _sync()
            self.seconds[name] = time.perf_counter() - started
            count = sum(p.numel() for p in self.modules[name].parameters())
            _log(f"built {name}: {count / 1e9:.3f} B params in {self.seconds[name]:.1f} s")

    def text_encoder(self) -> torch.nn.Module:
        """A fresh Gemma-3 text encoder (bf16, on the device); built anew for each run so that nothing
        else holds it when scenekit frees it."""
        from transformers import Gemma3Config, Gemma3ForConditionalGeneration

        started = time.perf_counter()
        model = _build(
            lambda: Gemma3ForConditionalGeneration(Gemma3Config(**self.te_cfg)),
            self.device,
            self.dtype,
            seed=2000,
            cast=False,
        )
        _sync()
        self.seconds["text_encoder"] = time.perf_counter() - started
        _log(
            f"built text_encoder: {sum(p.numel() for p in model.parameters()) / 1e9:.3f} B params in "
            f"{self.seconds['text_encoder']:.1f} s"
        )
        return model

    def write_folder(self, folder: Path) -> None:
        """A weights folder with configs only: model_index.json and each component's config."""
        from diffusers import LTX2Pipeline
        from transformers import Gemma3Config

        folder.mkdir(parents=True, exist_ok=True)
        pipe = LTX2Pipeline(
            scheduler=self.scheduler,
            vae=self.modules["vae"],
            audio_vae=self.modules["audio_vae"],
            text_encoder=None,
            tokenizer=self.tokenizer,
            connectors=self.modules["connectors"],
            transformer=self.modules["transformer"],
            vocoder=self.modules["vocoder"],
        )
        pipe.save_config(folder)
        index = json.loads((folder / "model_index.json").read_text())
        index["text_encoder"] = ["transformers", "Gemma3ForConditionalGeneration"]
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
        for name in ("transformer", "connectors", "vae", "audio_vae", "vocoder", "latent_upsampler"):
            self.modules[name].save_config(folder / name)
        self.scheduler.save_pretrained(folder / "scheduler")
        self.tokenizer.save_pretrained(folder / "tokenizer")
        Gemma3Config(**self.te_cfg).save_pretrained(folder / "text_encoder")


class Fresh:
    """A Redirect entry that builds a new module on every load, so that what a profile does to it in place
    (fp8 casting) stays with that profile."""

    def __init__(self, factory: Callable[[], torch.nn.Module]) -> None:
        self.factory = factory


class Redirect:
    """`from_pretrained(folder, subfolder=name)` of the component classes returns the built module for the
    bench's weights folders (and loads normally anywhere else). The text encoder is handed out once."""

    def __init__(self) -> None:
        self.modules: dict[tuple[str, str], Any] = {}
        self.once: set[tuple[str, str]] = set()

    def put(self, folder: Path, name: str, module: Any, once: bool = False) -> None:
        key = (str(Path(folder).resolve()), name)
        self.modules[key] = module
        if once:
            self.once.add(key)

    @classmethod
    def for_ltx2(cls) -> Redirect:
        """A Redirect installed on every class an LTX-2 pipeline loads."""
        from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
        from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2Vocoder
        from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE
        from transformers import Gemma3ForConditionalGeneration

        redirect = cls()
        redirect.install(
            [
                LTX2VideoTransformer3DModel,
                LTX2TextConnectors,
                AutoencoderKLLTX2Video,
                AutoencoderKLLTX2Audio,
                LTX2Vocoder,
                LTX2VocoderWithBWE,
                LTX2LatentUpsamplerModel,
                Gemma3ForConditionalGeneration,
            ]
        )
        return redirect

    def install(self, classes: list[type]) -> None:
        for cls in classes:
            original = cls.from_pretrained  # bound classmethod

            def fake(klass, path, *args, __original=original, **kwargs):
                key = (str(Path(path).resolve()), kwargs.get("subfolder"))
                if key in self.modules:
                    entry = self.modules.pop(key) if key in self.once else self.modules[key]
                    return entry.factory() if isinstance(entry, Fresh) else entry
                return __original(path, *args, **kwargs)

            cls.from_pretrained = classmethod(fake)


# --- timing -----------------------------------------------------------------------------------------


def _cuda() -> bool:
    return torch.cuda.is_available() and os.environ.get("SCENEKIT_DEVICE", "cuda") != "cpu"


def _sync() -> None:
    if _cuda():
        torch.cuda.synchronize()


class _Mark:
    """A point in time: a CUDA event on the GPU, else the host clock."""

    def __init__(self) -> None:
        if _cuda():
            self.event = torch.cuda.Event(enable_timing=True)
            self.event.record()
        else:
            self.host = time.perf_counter()

    def ms_to(self, later: _Mark) -> float:
        if _cuda():
            return self.event.elapsed_time(later.event)
        return (later.host - self.host) * 1000


class ForwardTimer:
    """Times every transformer forward (by hooks), keyed by its video token count and batch size."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.records: list[tuple[int, int, _Mark, _Mark]] = []
        self._open: tuple[int, int, _Mark] | None = None
        self.attach(module)

    def attach(self, module: torch.nn.Module) -> None:
        """Time `module`'s forwards too (a copy of the transformer that a profile quantizes)."""
        module.register_forward_pre_hook(self._pre, with_kwargs=True)
        module.register_forward_hook(self._post)

    def _pre(self, module, args, kwargs):
        states = kwargs.get("hidden_states", args[0] if args else None)
        self._open = (int(states.shape[1]), int(states.shape[0]), _Mark())

    def _post(self, module, args, output):
        tokens, batch, start = self._open
        self.records.append((tokens, batch, start, _Mark()))

    def take(self) -> list[tuple[int, int, _Mark, _Mark]]:
        records, self.records = self.records, []
        return records


def _per_stage(records, stage_tokens: dict[str, int], steps: dict[str, int]) -> dict[str, dict]:
    """Transformer figures per stage, from the forwards whose token count is that stage's."""
    out = {}
    for stage, tokens in stage_tokens.items():
        mine = [r for r in records if r[0] == tokens]
        if not mine:
            continue
        total = sum(start.ms_to(end) for _, _, start, end in mine)
        out[stage] = {
            "tokens": tokens,
            "forwards": len(mine),
            "batch_sizes": sorted({r[1] for r in mine}),
            "transformer_ms": round(total, 2),
            "steps": steps[stage],
            "ms_per_step": round(total / steps[stage], 2),
            "ms_per_forward": round(total / len(mine), 2),
        }
    return out


class ComputeTimer:
    """Wraps scenekit.ltx2.recipe's steps (synchronised) to split node time into compute and the rest."""

    def __init__(self) -> None:
        from scenekit.ltx2 import recipe

        self.seconds: dict[str, float] = {}
        self.last_decode: tuple | None = None
        for name in ("encode_prompt", "sample_latents", "upsample_latents", "decode"):
            setattr(recipe, name, self._wrap(name, getattr(recipe, name)))

    def _wrap(self, name: str, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            _sync()
            started = time.perf_counter()
            result = function(*args, **kwargs)
            _sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            if name == "decode":
                self.last_decode = result
            return result

        return timed

    def take(self) -> dict[str, float]:
        seconds, self.seconds = self.seconds, {}
        return {k: round(v, 3) for k, v in seconds.items()}


def _storage(module: torch.nn.Module) -> dict[str, float]:
    """GB of parameters by dtype (fp8 storage shows as float8_e4m3fn)."""
    found: dict[str, float] = {}
    for tensor in module.parameters():
        key = str(tensor.dtype).replace("torch.", "")
        found[key] = found.get(key, 0.0) + tensor.numel() * tensor.element_size() / 1e9
    return {k: round(v, 3) for k, v in found.items()}


def _compiled_graphs() -> int:
    """Graphs torch.compile has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _eager():
    """Run compiled code eagerly (the direct diffusers calls share the transformer scenekit compiled)."""
    return torch.compiler.set_stance("force_eager")


def _peak_reset() -> None:
    gc.collect()
    if _cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 1e9, 2) if _cuda() else None


# --- profiles and specs -----------------------------------------------------------------------------


def _profile(name: str):
    from scenekit.profiles import available_profiles

    return available_profiles()[name]


LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def write_random_lora(transformer: torch.nn.Module, path: Path, rank: int, seed: int = 7) -> dict[str, Any]:
    """A random LoRA of `rank` on every attention projection of the transformer blocks, saved in the format
    Lightricks publish (`diffusion_model.<module>.lora_{A,B}.weight`, bf16), as the distilled LoRA stands in
    for; returns its size. Small values: the refined latents stay finite."""
    from safetensors.torch import save_file

    device = next(transformer.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)

    def random(rows: int, columns: int) -> torch.Tensor:
        values = torch.randn(rows, columns, generator=generator, device=device, dtype=torch.bfloat16) * 0.01
        return values.cpu()

    tensors: dict[str, torch.Tensor] = {}
    for name, module in transformer.named_modules():
        if (
            name.startswith("transformer_blocks.")
            and name.endswith(LORA_TARGETS)
            and isinstance(module, torch.nn.Linear)
        ):
            tensors[f"diffusion_model.{name}.lora_A.weight"] = random(rank, module.in_features)
            tensors[f"diffusion_model.{name}.lora_B.weight"] = random(module.out_features, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return {
        "file": path.name,
        "rank": rank,
        "layers": len(tensors) // 2,
        "gb": round(sum(t.numel() * t.element_size() for t in tensors.values()) / 1e9, 2),
    }


def _profile_lora(name: str):
    """The weights entry of the LoRA a profile's stages use, or None."""
    from scenekit.ltx2.settings import ltx2_settings

    settings = ltx2_settings(_profile(name))
    return settings.weights.distilled_lora if any(stage.lora for stage in settings.stages) else None


def _write_spec(
    project: Path, profile: str, width: int, height: int, frames: int, fps: int, seed: int, steps: int | None
) -> Path:
    project.mkdir(parents=True, exist_ok=True)
    (project / "scenekit.toml").write_text("")
    extra = f"\n    steps: {steps}" if steps is not None else ""
    spec = project / f"{profile}.yaml"
    spec.write_text(
        f"scenekit: 1\n"
        f"defaults: {{model: {profile}, size: {width}x{height}, fps: {fps}, seed: {seed}}}\n"
        f"clips:\n"
        f"  - id: shot\n"
        f'    prompt: "{PROMPT}"\n'
        f"    frames: {frames}{extra}\n"
        f"output: {{file: {profile}.mp4}}\n"
    )
    return spec


# --- the two ways ---------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, root: Path, comps: Components, redirect: Redirect):
        self.args, self.root, self.comps, self.redirect = args, root, comps, redirect
        self.width, self.height = (int(v) for v in args.size.split("x"))
        self.timer = ForwardTimer(comps.modules["transformer"])
        self.compute = ComputeTimer()
        latent_frames = (args.frames - 1) // 8 + 1
        self.tokens = {
            "stage1": latent_frames * (self.height // 64) * (self.width // 64),
            "stage2": latent_frames * (self.height // 32) * (self.width // 32),
        }

    def folder(self, profile: str) -> Path:
        return (self.root / "models" / profile).resolve()

    def settings(self, profile: str):
        from scenekit.ltx2.settings import ltx2_settings

        return ltx2_settings(_profile(profile))

    def numerics(self, profile: str):
        """How scenekit's pool will run the profile's transformer under `--speed`."""
        from scenekit.hardware import compute_device
        from scenekit.runtime.speed import resolve_numerics, this_machine

        precision = self.settings(profile).precision
        return resolve_numerics(self.args.speed, precision.compute, precision.storage, this_machine(compute_device()))

    def transformer_copy(self) -> torch.nn.Module:
        """A copy of the built transformer (timed like it) for a profile that quantizes it in place."""
        import copy

        original = self.comps.modules["transformer"]
        hooks = original._forward_hooks, original._forward_pre_hooks
        original._forward_hooks, original._forward_pre_hooks = type(hooks[0])(), type(hooks[1])()
        try:
            module = copy.deepcopy(original)
        finally:
            original._forward_hooks, original._forward_pre_hooks = hooks
        self.timer.attach(module)
        return module

    # scenekit ------------------------------------------------------------------------------------------

    def scenekit(self, profile: str, steps: int | None, tag: str) -> tuple[dict, np.ndarray | None]:
        from scenekit.engine.events import SilentEvents
        from scenekit.engine.session import RenderOptions, prepare, render

        spec = _write_spec(
            self.root / "project",
            profile,
            self.width,
            self.height,
            self.args.frames,
            self.args.fps,
            self.args.seed,
            steps,
        )
        cache = self.root / "cache" / tag
        shutil.rmtree(cache, ignore_errors=True)
        te = self.comps.text_encoder()
        self.redirect.put(self.folder(profile), "text_encoder", te, once=True)
        del te
        self.timer.take()
        self.compute.take()
        _peak_reset()
        _sync()
        started = time.perf_counter()
        graphs_before = _compiled_graphs()
        result = render(
            prepare(
                spec, RenderOptions(cache_dir=cache, speed=self.args.speed, memory=getattr(self.args, "memory", None))
            ),
            SilentEvents(),
        )
        _sync()
        total = time.perf_counter() - started
        peak = _peak_gb()
        nodes = {k.split("/")[-1]: round(v, 3) for k, v in result.seconds.items()}
        shutil.rmtree(cache, ignore_errors=True)  # every run starts from an empty cache
        decoded = self.compute.last_decode
        frames = decoded[0] if decoded else None
        self.compute.last_decode = None
        row = {
            "run": f"scenekit {profile}",
            "tag": tag,
            "total_s": round(total, 3),
            "prompt_s": nodes.get("prompt"),
            "stage1_s": nodes.get("stage1"),
            "stage2_s": round(nodes.get("upsample", 0) + nodes.get("stage2", 0), 3),
            "decode_s": nodes.get("decode"),
            "rest_s": round(
                total - sum(v for k, v in nodes.items() if k in ("prompt", "stage1", "upsample", "stage2", "decode")), 3
            ),
            "nodes_s": nodes,
            "compute_s": self.compute.take(),
            "peak_gb": peak,
            "transformer": _per_stage(self.timer.take(), self.tokens, self._steps(profile, steps)),
            "output": str(result.output),
            "compiled_graphs": _compiled_graphs() - graphs_before,
            "transformer_storage": _storage(self.comps.modules["transformer"]),
            "finite": {"audio": bool(np.isfinite(decoded[1]).all())} if decoded else None,
        }
        return row, frames

    # direct ----------------------------------------------------------------------------------------------

    def _steps(self, profile: str, steps: int | None) -> dict[str, int]:
        stages = self.settings(profile).stages
        first = len(stages[0].sigmas) if stages[0].sigmas else (steps or stages[0].steps)
        return {"stage1": first, "stage2": len(stages[1].sigmas)}

    def direct(self, profile: str, steps: int | None, tag: str) -> tuple[dict, np.ndarray]:
        from diffusers import FlowMatchEulerDiscreteScheduler, LTX2LatentUpsamplePipeline, LTX2Pipeline

        s = self.settings(profile)
        stage1, stage2 = s.stages
        m = self.comps.modules
        te = self.comps.text_encoder()

        def pipeline(fixed_sigmas: bool, text_encoder: torch.nn.Module) -> LTX2Pipeline:
            scheduler = FlowMatchEulerDiscreteScheduler(**self.comps.scheduler_cfg)
            if fixed_sigmas:  # as the docs' stage 2: the given sigmas, unshifted
                scheduler = FlowMatchEulerDiscreteScheduler.from_config(
                    scheduler.config, use_dynamic_shifting=False, shift_terminal=None
                )
            pipe = LTX2Pipeline(
                scheduler=scheduler,
                vae=m["vae"],
                audio_vae=m["audio_vae"],
                text_encoder=text_encoder,
                tokenizer=self.comps.tokenizer,
                connectors=m["connectors"],
                transformer=m["transformer"],
                vocoder=m["vocoder"],
            )
            pipe.set_progress_bar_config(disable=True)
            return pipe

        upsample_pipe = LTX2LatentUpsamplePipeline(vae=m["vae"], latent_upsampler=m["latent_upsampler"])
        upsample_pipe.set_progress_bar_config(disable=True)
        off = dict(
            guidance_scale=1.0,
            stg_scale=0.0,
            modality_scale=1.0,
            guidance_rescale=0.0,
            audio_guidance_scale=1.0,
            audio_stg_scale=0.0,
            audio_modality_scale=1.0,
            audio_guidance_rescale=0.0,
            spatio_temporal_guidance_blocks=[],
        )
        if stage1.guided:
            g = s.guidance
            guidance1 = dict(
                guidance_scale=g.cfg,
                stg_scale=g.stg,
                modality_scale=g.modality,
                guidance_rescale=g.rescale,
                audio_guidance_scale=g.audio_cfg,
                audio_stg_scale=g.audio_stg,
                audio_modality_scale=g.audio_modality,
                audio_guidance_rescale=g.audio_rescale,
                spatio_temporal_guidance_blocks=list(g.stg_blocks),
            )
        else:
            guidance1 = off
        n1 = len(stage1.sigmas) if stage1.sigmas else (steps or stage1.steps)
        common = dict(
            num_frames=self.args.frames,
            frame_rate=float(self.args.fps),
            use_cross_timestep=s.use_cross_timestep,
            max_sequence_length=s.max_sequence_length,
            return_dict=False,
        )
        pipe1, pipe2 = pipeline(stage1.sigmas is not None, te), pipeline(True, te)
        lora = _profile_lora(profile) if stage2.lora else None
        transformer = m["transformer"]
        if lora is not None:  # the docs' step 3: the distilled LoRA for stage 2 (shared with scenekit's pool)
            adapter = Path(lora.file).stem.replace(".", "_").replace("-", "_")
            if adapter not in (getattr(transformer, "peft_config", None) or {}):
                pipe2.load_lora_weights(str(self.folder(profile) / lora.file), adapter_name=adapter)
            transformer.disable_lora()
        elif getattr(transformer, "peft_config", None):
            transformer.disable_lora()

        self.timer.take()
        _peak_reset()
        _sync()
        with _eager():
            return self._direct_calls(
                profile,
                tag,
                s,
                pipe1,
                pipe2,
                upsample_pipe,
                te,
                guidance1,
                off,
                common,
                n1,
                lora,
                adapter if lora is not None else None,
            )

    def _direct_calls(
        self, profile, tag, s, pipe1, pipe2, upsample_pipe, te, guidance1, off, common, n1, lora, adapter
    ):
        from diffusers.utils import encode_video

        stage1, stage2 = s.stages
        m = self.comps.modules
        transformer = m["transformer"]
        t0, m0 = time.perf_counter(), _Mark()
        video_latents, audio_latents = pipe1(
            prompt=PROMPT,
            negative_prompt="" if stage1.guided else None,
            width=int(self.width * stage1.ratio),
            height=int(self.height * stage1.ratio),
            sigmas=stage1.sigmas,
            num_inference_steps=n1,
            generator=torch.Generator("cpu").manual_seed(self.args.seed),
            output_type="latent",
            **guidance1,
            **common,
        )
        _sync()
        if lora is not None:
            transformer.enable_lora()
            transformer.set_adapters([adapter], weights=[lora.strength])
        t1 = time.perf_counter()
        upsampled = upsample_pipe(latents=video_latents, output_type="latent", return_dict=False)[0]
        # float32 as scenekit stores latents (the docs pass the bf16 tensor on: same work, the stage-2 noise
        # mixing then rounds differently and the frames are not bit-comparable)
        upsampled = upsampled.float()
        _sync()
        t2, m2 = time.perf_counter(), _Mark()
        video, audio = pipe2(
            prompt=PROMPT,
            latents=upsampled,
            audio_latents=audio_latents,
            width=self.width,
            height=self.height,
            sigmas=stage2.sigmas,
            num_inference_steps=len(stage2.sigmas),
            noise_scale=stage2.noise_scale,
            generator=torch.Generator("cpu").manual_seed(self.args.seed),
            output_type="np",
            **off,
            **common,
        )
        _sync()
        t3 = time.perf_counter()
        encode_video(
            video[0],
            fps=self.args.fps,
            output_path=str(self.root / f"direct-{profile}.mp4"),
            audio=audio[0].float().cpu(),
            audio_sample_rate=m["vocoder"].config.output_sampling_rate,
        )
        t4 = time.perf_counter()
        peak = _peak_gb()
        records = self.timer.take()
        first1 = next(r for r in records if r[0] == self.tokens["stage1"])
        last2 = [r for r in records if r[0] == self.tokens["stage2"]][-1]
        prompt_s = m0.ms_to(first1[2]) / 1000  # text encoder + connectors + latent set-up, before stage 1's first step
        decode_s = (t3 - t2) - m2.ms_to(last2[3]) / 1000  # after stage 2's last transformer forward
        row = {
            "run": f"direct {profile}",
            "tag": tag,
            "total_s": round(t4 - t0, 3),
            "prompt_s": round(prompt_s, 3),
            "stage1_s": round(t1 - t0 - prompt_s, 3),
            "stage2_s": round(t3 - t1 - decode_s, 3),
            "decode_s": round(decode_s, 3),
            "rest_s": round(t4 - t3, 3),
            "finite": {"video": bool(np.isfinite(video).all()), "audio": bool(torch.isfinite(audio).all())},
            "calls_s": {
                "stage1_call": round(t1 - t0, 3),
                "upsample_call": round(t2 - t1, 3),
                "stage2_call_with_decode": round(t3 - t2, 3),
            },
            "peak_gb": peak,
            "transformer": _per_stage(records, self.tokens, {"stage1": n1, "stage2": len(stage2.sigmas)}),
            "transformer_storage": _storage(m["transformer"]),
        }
        frames = (video[0] * 255).round().astype(np.uint8)
        del pipe1, pipe2, upsample_pipe, te, video, audio, video_latents, audio_latents, upsampled
        gc.collect()
        return row, frames


# --- report ---------------------------------------------------------------------------------------------


def _median_row(rows: list[dict]) -> dict:
    out = dict(rows[0])
    for key in ("total_s", "prompt_s", "stage1_s", "stage2_s", "decode_s", "rest_s", "peak_gb"):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    for stage in ("stage1", "stage2"):
        values = [r["transformer"][stage]["ms_per_step"] for r in rows if stage in r["transformer"]]
        if values:
            out.setdefault("ms_per_step", {})[stage] = round(statistics.median(values), 1)
    out["repeats"] = len(rows)
    out["totals_s"] = [r["total_s"] for r in rows]
    return out


def _table(summary: list[dict]) -> str:
    head = (
        f"{'run':<26}{'total s':>9}{'prompt s':>9}{'stage1 s':>9}{'stage2 s':>9}{'decode s':>9}{'rest s':>8}"
        f"{'tf ms/step s1':>14}{'tf ms/step s2':>14}{'peak GB':>9}{'ratio':>7}"
    )
    lines = [head, "-" * len(head)]

    def f(v, width, digits=2):
        return f"{v:>{width}.{digits}f}" if isinstance(v, (int, float)) else f"{'-':>{width}}"

    for row in summary:
        steps = row.get("ms_per_step", {})
        lines.append(
            f"{row['run']:<26}{f(row['total_s'], 9)}{f(row['prompt_s'], 9)}{f(row['stage1_s'], 9)}"
            f"{f(row['stage2_s'], 9)}{f(row['decode_s'], 9)}{f(row['rest_s'], 8)}"
            f"{f(steps.get('stage1'), 14, 1)}{f(steps.get('stage2'), 14, 1)}{f(row['peak_gb'], 9)}"
            f"{f(row.get('ratio'), 7, 3)}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="toy-sized components (CPU dry run)")
    parser.add_argument("--profiles", default="ltx2-distilled,ltx2-dev-fp8")
    parser.add_argument("--size", default=None, help="WxH (default 768x512; --tiny: 256x256)")
    parser.add_argument("--frames", type=int, default=None, help="default 121 (--tiny: 17)")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="timed (scenekit, direct) pairs per profile")
    parser.add_argument(
        "--dev-steps", type=int, default=None, help="stage-1 steps of guided profiles (default: profile's)"
    )
    parser.add_argument("--warmup-steps", type=int, default=2, help="stage-1 steps of guided profiles in the warm-up")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no further timed pair once this much wall time has gone (keeps a device call in its limit)",
    )
    parser.add_argument(
        "--speed", default="eager", help="scenekit's speed policy (eager: bit-exact with direct; auto, compiled, fp8)"
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--json", default=None, help="also write the results here ($OUT/ltx2_gpu.json when $OUT is set)"
    )
    args = parser.parse_args()
    args.size = args.size or ("256x256" if args.tiny else "768x512")
    args.frames = args.frames or (17 if args.tiny else 121)

    device = "cuda" if torch.cuda.is_available() and os.environ.get("SCENEKIT_DEVICE") != "cpu" else "cpu"
    os.environ.setdefault("SCENEKIT_DEVICE", device)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="ltx2_gpu_"))
    os.environ["SCENEKIT_MODELS"] = str(root / "models")
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    notes: list[str] = []

    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()

    env = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "python": sys.version.split()[0],
        "mode": "tiny" if args.tiny else "real LTX-2.0 configs, random weights",
        "size": args.size,
        "frames": args.frames,
        "fps": args.fps,
        "seed": args.seed,
        "scenekit": str(
            Path(
                sys.modules["scenekit"].__file__ if "scenekit" in sys.modules else __import__("scenekit").__file__
            ).parent
        ),
    }
    _log(f"env: {env}")

    started = time.perf_counter()
    comps = Components(configs.TINY if args.tiny else configs.REAL, device, torch.bfloat16)
    redirect = Redirect.for_ltx2()
    loras = {}
    bench = Bench(args, root, comps, redirect)
    for profile in profiles:
        folder = (root / "models" / profile).resolve()
        comps.write_folder(folder)
        for name, module in comps.modules.items():
            redirect.put(folder, name, module)
        if bench.numerics(profile).matmul == FP8_ROWWISE:  # quantized in place: a copy, so the direct runs keep bf16
            redirect.put(folder, "transformer", Fresh(bench.transformer_copy))
        lora = _profile_lora(profile)
        if lora is not None:
            loras[profile] = write_random_lora(
                comps.modules["transformer"], folder / lora.file, 4 if args.tiny else 384
            )
            _log(f"{profile}: random LoRA {loras[profile]}")

    results: dict[str, Any] = {
        "env": env,
        "notes": notes,
        "build_s": {k: round(v, 2) for k, v in comps.seconds.items()},
        "tokens": bench.tokens,
        "loras": loras,
        "runs": [],
        "summary": [],
    }
    out_dir = os.environ.get("OUT")
    json_path = Path(args.json) if args.json else (Path(out_dir) / "ltx2_gpu.json" if out_dir else None)

    def save() -> None:
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(results, indent=1, default=str))

    from scenekit.ltx2.pool import POOL

    # bf16-stored profiles first: the fp8 ones cast the shared transformer in place (as scenekit's pool does).
    profiles.sort(key=lambda p: bench.settings(p).precision.storage != bench.settings(p).precision.compute)
    for profile in profiles:
        s = bench.settings(profile)
        guided = s.stages[0].guided
        POOL.clear()
        warm = args.warmup_steps if guided else None
        steps = args.dev_steps if guided else None
        pairs: dict[str, list[dict]] = {"scenekit": [], "direct": []}
        diffs: list[dict] = []
        scenekit_ok = True

        # this iteration's profile and step counts are bound as defaults: a closure would see the loop's later values
        def attempt(way: str, tag: str, *, profile: str = profile, warm: int | None = warm, steps: int | None = steps):
            nonlocal scenekit_ok
            if way == "scenekit" and not scenekit_ok:
                return None, None
            try:
                row, frames = getattr(bench, way)(profile, warm if tag == "warmup" else steps, tag)
            except Exception as exc:  # keep the GPU call useful: record, go on with the other way
                import traceback

                traceback.print_exc()
                results["runs"].append({"run": f"{way} {profile}", "tag": tag, "error": f"{type(exc).__name__}: {exc}"})
                if way == "scenekit":
                    scenekit_ok = False
                POOL.release_text_encoder()
                gc.collect()
                save()
                return None, None
            results["runs"].append(row)
            extra = (
                f"nodes {row['nodes_s']}  compute {row['compute_s']}"
                if way == "scenekit"
                else f"calls {row['calls_s']}"
            )
            _log(
                f"  {way:<8} {tag}: {row['total_s']:.2f} s  {extra}  peak {row['peak_gb']} GB  finite {row['finite']}  "
                f"transformer {row['transformer']}"
            )
            save()
            return row, frames

        _log(f"{profile}: warm-up (scenekit, then direct)" + (f" with {warm} stage-1 steps" if guided else ""))
        attempt("scenekit", "warmup")
        attempt("direct", "warmup")
        pair_s = 0.0
        for repeat in range(args.repeats):
            if repeat and args.budget_s and time.perf_counter() - started + pair_s > args.budget_s:
                _log(f"  stopping after {repeat} timed pair(s): --budget-s {args.budget_s:.0f} s")
                results["notes"].append(f"{profile}: {repeat} timed pair(s) only (--budget-s)")
                break
            pair_started = time.perf_counter()
            sk, sk_frames = attempt("scenekit", f"r{repeat}")
            dr, dr_frames = attempt("direct", f"r{repeat}")
            for way, row in (("scenekit", sk), ("direct", dr)):
                if row is not None:
                    pairs[way].append(row)
            if sk_frames is not None and dr_frames is not None and sk_frames.shape == dr_frames.shape:
                diff = np.abs(sk_frames.astype(np.int16) - dr_frames.astype(np.int16))
                mse = float((diff.astype(np.float64) ** 2).mean())
                diffs.append(
                    {
                        "max_abs": int(diff.max()),
                        "equal_fraction": round(float((diff == 0).mean()), 4),
                        "psnr_db": round(10 * np.log10(255**2 / mse), 2) if mse else None,
                        "shape": list(sk_frames.shape),
                        "mean_value": round(float(dr_frames.mean()), 2),
                    }
                )
                _log(f"  frames scenekit vs direct: {diffs[-1]}")
            del sk_frames, dr_frames
            pair_s = time.perf_counter() - pair_started
        sk_row = _median_row(pairs["scenekit"]) if pairs["scenekit"] else None
        dr_row = _median_row(pairs["direct"]) if pairs["direct"] else None
        if sk_row and dr_row:
            sk_row["ratio"] = round(sk_row["total_s"] / dr_row["total_s"], 3)
            sk_row["ratio_without_mp4"] = round(
                (sk_row["total_s"] - sk_row["rest_s"]) / (dr_row["total_s"] - dr_row["rest_s"]), 3
            )
            sk_row["frames_vs_direct"] = diffs
            dr_row["ratio"] = 1.0
        results["summary"] += [row for row in (sk_row, dr_row) if row]
        save()
    POOL.clear()

    print()
    print(
        f"device: {env['device']}; torch {env['torch']}, diffusers {env['diffusers']}, transformers "
        f"{env['transformers']}; {args.size} x {args.frames} frames @ {args.fps} fps; {env['mode']}"
    )
    print(
        f"medians of {args.repeats} timed runs each; total = prompt text to mp4 file on disk; ratio = scenekit total / "
        f"direct total; rest = scenekit: mp4 stitch + plan + manifest, direct: diffusers encode_video; "
        f"tokens per forward: stage 1 {bench.tokens['stage1']}, stage 2 {bench.tokens['stage2']}"
    )
    print(_table(results["summary"]))
    for row in results["summary"]:
        if row["run"].startswith("scenekit") and "ratio_without_mp4" in row:
            print(
                f"{row['run']}: ratio without writing the mp4 ('rest' s of both) {row['ratio_without_mp4']}; "
                f"frames vs direct {row['frames_vs_direct']}"
            )
    for note in notes:
        print("note:", note)
    print(f"build (s): {results['build_s']}; total bench wall {time.perf_counter() - started:.0f} s")
    save()


if __name__ == "__main__":
    main()
