"""Which device a render runs on, and whether a profile can run there (checked before any work)."""

from __future__ import annotations

import os

from scenekit.profiles import ModelProfile

DEVICE_ENV = "SCENEKIT_DEVICE"


def compute_device() -> str:
    """`$SCENEKIT_DEVICE` if set, else `cuda` when a GPU is visible, else `cpu`."""
    chosen = os.environ.get(DEVICE_ENV)
    if chosen:
        return chosen
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def why_profile_cannot_run(profile: ModelProfile) -> str | None:
    """A sentence saying why `profile` cannot run on this machine, or None when it can."""
    device = compute_device()
    needed = profile.requires.min_compute_capability
    if device == "cpu":
        if profile.requires.gpu and os.environ.get(DEVICE_ENV) != "cpu":
            return (
                f"model `{profile.name}` needs a GPU ({profile.requires.vram_gb:g} GB) and none is visible; "
                f"set {DEVICE_ENV}=cpu to force the CPU (only sensible with tiny test weights)"
            )
        return None
    import torch

    major, minor = torch.cuda.get_device_capability()
    have = major + minor / 10
    if needed is not None and have < needed:
        return (
            f"model `{profile.name}` needs a GPU of compute capability {needed:g}+; "
            f"{torch.cuda.get_device_name()} has {have:g}"
        )
    return None
