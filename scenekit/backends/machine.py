"""What every family with weights checks first: can this machine run the clip's profile, and with which
transformer numerics (the render's `--speed`, else the profile's)."""

from __future__ import annotations

from scenekit.hardware import compute_device, why_profile_cannot_run
from scenekit.runtime.speed import Numerics, SpeedUnavailable, resolve_numerics, this_machine
from scenekit.timeline import ResolvedClip, Timeline


def numerics_here(clip: ResolvedClip, timeline: Timeline, speed: str, compute: str, storage: str) -> Numerics | str:
    """The numerics of `clip`'s transformer on this machine (`speed` is the profile's own policy), or why this
    machine cannot render the clip."""
    reason = why_profile_cannot_run(clip.profile)
    if reason:
        return reason
    try:
        return resolve_numerics(timeline.speed or speed, compute, storage, this_machine(compute_device()))
    except SpeedUnavailable as exc:
        return f"model `{clip.profile.name}`: {exc}"
