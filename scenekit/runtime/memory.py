"""Memory policies: which large models stay on the GPU and which are streamed to it block by block.

    resident  every model stays on the GPU while it is in use (fastest; the most memory)
    offload   the transformer and the text encoder live in pinned CPU memory and their blocks are
              copied to the GPU one at a time on a side stream, overlapped with the previous block's
              compute (diffusers' group offloading); a 19B transformer then needs a few GB of GPU memory
    auto      `resident` when the GPU has room for the model plus working memory, else `offload`

Offloading moves weights, never changes them: outputs are identical under every policy, so the
policy is not part of any cache key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MEMORIES = ("auto", "resident", "offload")
#: GPU memory kept free for activations when deciding whether a model may stay resident
#: (768x512x121 stage 2 of a 19B transformer at full size, with room to spare).
WORKING_MEMORY_BYTES = 24 * 2**30


@dataclass
class MemorySettings:
    """The memory policy of this process (set per render by the engine)."""

    policy: str = "auto"


SETTINGS = MemorySettings()


def use_memory_policy(policy: str) -> None:
    """Load models under `policy` from now on in this process (models already loaded keep theirs)."""
    if policy not in MEMORIES:
        raise ValueError(f"unknown memory policy `{policy}`; use one of {', '.join(MEMORIES)}")
    SETTINGS.policy = policy


def choose_placement(what: str, needed_bytes: int, free_bytes: int | None) -> str:
    """`resident` or `offload` for a model of `needed_bytes` under the process's policy, given the GPU's
    free bytes (None: the models run on the CPU, where `auto` offloads nothing)."""
    policy = SETTINGS.policy
    if policy != "auto":
        return policy
    if free_bytes is None:
        return "resident"
    policy = "resident" if free_bytes >= needed_bytes + WORKING_MEMORY_BYTES else "offload"
    log.info("memory: %s %s (%.1f GB needed, %.1f GB free)", what, policy, needed_bytes / 1e9, free_bytes / 1e9)
    return policy


def free_gpu_bytes(device: str) -> int | None:
    """Bytes this process may still take on `device`: the GPU's free memory, within the process's cap
    (`torch.cuda.set_per_process_memory_fraction`, how a smaller card is emulated); None on the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    index = torch.device(device).index
    gpu = torch.cuda.current_device() if index is None else index
    free, total = torch.cuda.mem_get_info(gpu)
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda _: 1.0)(gpu)
    return min(free, int(fraction * total) - torch.cuda.memory_reserved(gpu))


def offload_blocks(model: Any, device: str) -> None:
    """Keep `model` in pinned CPU memory and stream it to `device` as it runs, one group ahead on a side
    stream: by blocks when its blocks are a list at its top level (a diffusers transformer), else layer
    by layer (a text encoder, whose blocks sit deeper)."""
    import torch
    from diffusers.hooks import apply_group_offloading

    model.to("cpu")
    by_blocks = any(isinstance(child, torch.nn.ModuleList) for child in model.children())
    apply_group_offloading(
        model,
        onload_device=torch.device(device),
        offload_device=torch.device("cpu"),
        offload_type="block_level" if by_blocks else "leaf_level",
        num_blocks_per_group=1 if by_blocks else None,
        use_stream=device.startswith("cuda"),
    )
