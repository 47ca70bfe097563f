"""Which device a render runs on, and whether a profile can run there (checked before any work)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from scenekit.profiles import ModelProfile
from scenekit.runtime.speed import Machine

DEVICE_ENV = "SCENEKIT_DEVICE"

_THREAD = threading.local()


def compute_device() -> str:
    """The device this thread was bound to (`bound_device`), else `$SCENEKIT_DEVICE` if set, else `cuda` when a
    GPU is visible, else `cpu`."""
    bound: str | None = getattr(_THREAD, "device", None)
    if bound:
        return bound
    chosen = os.environ.get(DEVICE_ENV)
    if chosen:
        return chosen
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def local_devices() -> list[str]:
    """The devices renders can run on side by side here: every visible GPU (`cuda:0`, `cuda:1`, ...) unless
    `$SCENEKIT_DEVICE` names one device, else the one `compute_device` gives (`cpu` without a GPU)."""
    device = compute_device()
    if device != "cuda":
        return [device]
    import torch

    return [f"cuda:{index}" for index in range(torch.cuda.device_count())]


@contextmanager
def bound_device(device: str) -> Iterator[None]:
    """Run this thread's work in the block on `device` (a server worker's own GPU): `compute_device` gives it,
    and on a GPU it is the thread's current CUDA device, so what allocates on `cuda` lands there too."""
    previous = getattr(_THREAD, "device", None)
    _THREAD.device = device
    try:
        if device.startswith("cuda:"):
            import torch

            torch.cuda.set_device(device)  # per thread, as CUDA's current device is
        yield
    finally:
        _THREAD.device = previous


def why_profile_cannot_run(profile: ModelProfile, machine: Machine) -> str | None:
    """A sentence saying why `profile` cannot run on `machine` (this one, or a Ray cluster's GPUs), or None."""
    needed = profile.requires.min_compute_capability
    if not machine.device.startswith("cuda"):
        if profile.requires.gpu and os.environ.get(DEVICE_ENV) != "cpu":
            return (
                f"model `{profile.name}` needs a GPU ({profile.requires.vram_gb:g} GB) and {machine.name} has none; "
                f"set {DEVICE_ENV}=cpu to force the CPU (only sensible with tiny test weights)"
            )
        return None
    have = machine.capability or 0.0
    if needed is not None and have < needed:
        return f"model `{profile.name}` needs a GPU of compute capability {needed:g}+; {machine.name} has {have:g}"
    return None
