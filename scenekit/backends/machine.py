"""What every family with weights checks first: can the machine the render targets run the clip's profile,
with which transformer numerics (the render's `--speed`, else the profile's), and are its decodes tiled.

The target is this process's device, or for the Ray executor the cluster's GPUs as the engine describes them
(`Timeline.machine`): keys then depend on the cluster, not on the machine that drives the render."""

from __future__ import annotations

from scenekit.hardware import compute_device, why_profile_cannot_run
from scenekit.runtime.memory import gpu_capacity_bytes, tiled_decode
from scenekit.runtime.speed import Machine, Numerics, SpeedUnavailable, resolve_numerics, this_machine
from scenekit.timeline import ResolvedClip, Timeline


def target_machine(timeline: Timeline) -> Machine:
    """The machine `timeline`'s model nodes run on."""
    return timeline.machine or this_machine(compute_device())


def numerics_here(clip: ResolvedClip, timeline: Timeline, speed: str, compute: str, storage: str) -> Numerics | str:
    """The numerics of `clip`'s transformer on the target machine (`speed` is the profile's own policy), or why
    that machine cannot render the clip."""
    machine = target_machine(timeline)
    reason = why_profile_cannot_run(clip.profile, machine)
    if reason:
        return reason
    try:
        return resolve_numerics(timeline.speed or speed, compute, storage, machine)
    except SpeedUnavailable as exc:
        return f"model `{clip.profile.name}`: {exc}"


def decodes_tiled(timeline: Timeline) -> bool:
    """Whether the timeline's VAE decodes run in tiles: its memory policy on the target machine's GPU."""
    machine = timeline.machine
    capacity = machine.gpu_bytes if machine is not None else gpu_capacity_bytes(compute_device())
    return tiled_decode(timeline.memory, capacity)
