"""Colour drift control for continuation chains: AdaIN of latents towards a reference clip."""

from __future__ import annotations

import torch


def adain(latents: torch.Tensor, reference: torch.Tensor, factor: float) -> torch.Tensor:
    """Move per-channel mean and std of `latents` ([B, C, ...]) towards `reference`'s by `factor` (0..1)."""
    if factor <= 0:
        return latents
    dims = tuple(range(2, latents.ndim))
    mean, std = latents.mean(dim=dims, keepdim=True), latents.std(dim=dims, keepdim=True).clamp_min(1e-6)
    ref = reference.to(latents)
    ref_mean, ref_std = ref.mean(dim=dims, keepdim=True), ref.std(dim=dims, keepdim=True)
    matched = (latents - mean) / std * ref_std + ref_mean
    return torch.lerp(latents, matched, factor)
