"""Tensors as node outputs (prompt embeddings, latents): handed to later nodes in memory as CPU copies and
written to the node's cache entry in the background as safetensors."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from scenekit.ops import NodeOutput, RunContext


def keep_tensors(ctx: RunContext, name: str, tensors: dict[str, torch.Tensor]) -> None:
    """Tensors for later nodes (a CPU copy in memory) and for the cache entry (`name`, in the background)."""
    on_cpu = {key: t.detach().to("cpu").contiguous() for key, t in tensors.items()}
    ctx.keep(name, on_cpu, lambda path: save_file(on_cpu, str(path)))


def output_tensors(output: NodeOutput, name: str) -> dict[str, torch.Tensor]:
    """A node's tensors (a new dict: the held one is shared)."""
    return dict(output.read(name, lambda path: load_file(str(path))))
