"""Speed policies: how a transformer's repeated blocks run, and what that changes in its numbers.

    eager     as diffusers runs it: frames equal a direct diffusers call bit for bit
    compiled  the repeated blocks compiled with torch.compile (regional compilation); float rounding
              differs slightly from eager (fused kernels)
    fp8       the blocks' linear layers quantized to float8 (per-row scales for weights and for each
              token's activations) and computed on fp8 tensor cores, then compiled; needs an NVIDIA GPU
              of compute capability 8.9+ (Ada, Hopper) and torchao
    auto      the fastest this machine has: fp8 for profiles that store fp8 (or NVFP4) weights where
              fp8 compute exists, else compiled on a GPU, eager on the CPU

Outputs differ between policies, so the resolved `Numerics` is part of the key of every node that
runs the transformer, and of the manifest.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPEEDS = ("auto", "eager", "compiled", "fp8")
FP8_MIN_CAPABILITY = 8.9
FP8_ROWWISE = "float8-rowwise"
COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


class SpeedUnavailable(Exception):
    """The speed policy asked for cannot run on this machine; the message says why and what to use."""


@dataclass(frozen=True)
class Machine:
    """What the graph's numerics and memory choices depend on: the device, its compute capability, whether
    torchao is installed; and where it is known ahead (a Ray cluster's GPUs), the GPU's memory and name."""

    device: str
    capability: float | None = None
    has_torchao: bool = False
    gpu_bytes: int | None = None
    """The GPU memory each model node may use; None: read from this process's GPU when needed."""
    name: str = "this machine"

    @property
    def fp8_compute(self) -> bool:
        return self.device.startswith("cuda") and (self.capability or 0) >= FP8_MIN_CAPABILITY and self.has_torchao


@dataclass(frozen=True)
class Numerics:
    """How a transformer computes: `matmul` is the compute dtype's name or `float8-rowwise`."""

    matmul: str
    compiled: bool

    @property
    def label(self) -> str:
        """A short name for messages and the plan: `bfloat16`, `bfloat16+compiled`, `float8-rowwise+compiled`."""
        return self.matmul + ("+compiled" if self.compiled else "")

    def as_params(self) -> dict[str, Any]:
        return asdict(self)


def held_storage(storage: str) -> str:
    """The dtype weights stored as `storage` are held in once loaded: NVFP4 checkpoints are dequantized
    at load (no FP4 kernels are used) and held in float8, which every GPU can store."""
    return "float8_e4m3fn" if storage == "nvfp4" else storage


@cache
def this_machine(device: str) -> Machine:
    """The machine the models run on (`device` as `scenekit.hardware.compute_device` gives it), asked once."""
    if not device.startswith("cuda"):
        return Machine(device)
    import torch

    gpu = torch.device(device)
    major, minor = torch.cuda.get_device_capability(gpu)
    has_torchao = importlib.util.find_spec("torchao") is not None
    return Machine(device, major + minor / 10, has_torchao, name=torch.cuda.get_device_name(gpu))


def any_machine(name: str) -> Machine:
    """A machine that can run every profile and policy: hardware not known yet (a Ray cluster not joined)."""
    return Machine("cuda", float("inf"), has_torchao=True, name=name)


def resolve_numerics(speed: str, compute: str, storage: str, machine: Machine) -> Numerics:
    """The numerics of `speed` for a transformer computing in `compute` with weights stored in `storage`;
    raises SpeedUnavailable when an explicitly requested policy cannot run on `machine`."""
    if speed not in SPEEDS:
        raise SpeedUnavailable(f"unknown speed `{speed}`; use one of {', '.join(SPEEDS)}")
    on_gpu = machine.device.startswith("cuda")
    if speed == "auto":
        if machine.fp8_compute and held_storage(storage).startswith("float8"):
            return Numerics(FP8_ROWWISE, compiled=True)
        return Numerics(compute, compiled=on_gpu)
    if speed == "eager":
        return Numerics(compute, compiled=False)
    if not on_gpu:
        raise SpeedUnavailable(f"speed `{speed}` needs a GPU; this render runs on {machine.device} (use `eager`)")
    if speed == "compiled":
        return Numerics(compute, compiled=True)
    if not machine.fp8_compute:
        why = (
            "torchao is not installed (pip install 'scenekit[fp8]')"
            if not machine.has_torchao
            else f"the GPU has compute capability {machine.capability:g}, fp8 tensor cores need {FP8_MIN_CAPABILITY:g}+"
        )
        raise SpeedUnavailable(f"speed `fp8` cannot run here: {why}; use `compiled`")
    return Numerics(FP8_ROWWISE, compiled=True)


def apply_numerics(model: Any, numerics: Numerics, offloaded: bool = False) -> None:
    """Quantize and/or compile `model`'s repeated blocks in place as `numerics` says (an offloaded model's
    blocks leave their weight transfers out of the compiled graphs)."""
    if numerics.matmul == FP8_ROWWISE:
        _quantize_fp8(model)
    if numerics.compiled:
        import torch

        # every block shares one compiled graph per variant (stage shapes, LoRA on or off); allow more than 8
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        model.compile_repeated_blocks(fullgraph=not offloaded)


def _block_names(model: Any) -> list[str]:
    """Qualified names of the model's repeated blocks (`transformer_blocks.0`, ...)."""
    repeated = set(getattr(model, "_repeated_blocks", ()))
    return [name for name, module in model.named_modules() if type(module).__name__ in repeated]


def _quantize_fp8(model: Any) -> None:
    """Float8 weights with per-row scales and dynamically quantized float8 activations for every linear
    layer inside the repeated blocks (LoRA layers stay in the compute dtype)."""
    import torch
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    blocks = tuple(f"{name}." for name in _block_names(model))

    def chosen(module: torch.nn.Module, name: str) -> bool:
        return (
            isinstance(module, torch.nn.Linear)
            and name.startswith(blocks)
            and "lora_" not in name
            and module.in_features % 16 == 0
            and module.out_features % 16 == 0
        )

    quantize_(model, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=chosen)


def use_compile_cache(folder: Path) -> None:
    """Keep compiled kernels in `folder` (under scenekit's cache), so a fresh process starts warm;
    a `$TORCHINDUCTOR_CACHE_DIR` set by the user wins."""
    if COMPILE_CACHE_ENV not in os.environ:  # torch makes the folder when it first compiles
        os.environ[COMPILE_CACHE_ENV] = str(folder)
        log.debug("compiled kernels are cached in %s", folder)
