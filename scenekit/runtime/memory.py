"""Memory policies: which large models stay on the GPU and which are streamed to it block by block.

    resident  every model stays on the GPU while it is in use (fastest; the most memory)
    offload   the transformer and the text encoder live in pinned CPU memory and their blocks are
              copied to the GPU one at a time on a side stream, overlapped with the previous blocks'
              compute (diffusers' group offloading); the transformer blocks that fit stay resident
              between the streamed ones, so a 19B transformer runs in whatever the GPU has
    auto      `resident` when the GPU has room for the model plus working memory, else `offload`

Offloading moves weights, never changes them: outputs are identical under every policy, so the
policy is not part of any cache key. On a GPU smaller than `TILED_DECODE_BELOW_BYTES`, `auto` and
`offload` also decode the VAE in overlapping tiles (in space and in time), which changes the frames
slightly: whether a decode is tiled is part of its key (`tiled_decode`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MEMORIES = ("auto", "resident", "offload")
#: GPU memory kept free for activations when deciding whether a model may stay resident
#: (768x512x121 stage 2 of a 19B transformer at full size, with room to spare).
WORKING_MEMORY_BYTES = 24 * 2**30
#: GPU memory kept free beside the resident blocks of a streamed model: the blocks in flight, the
#: smaller models (VAE, upsampler) and the activations (decode of 768x512x121 included).
STREAMING_WORKING_BYTES = 10 * 2**30
#: GPUs (within the process's cap) smaller than this decode in tiles unless the policy is `resident`:
#: an untiled decode of 1280x704x121 does not fit in 30 GiB beside a streamed transformer.
TILED_DECODE_BELOW_BYTES = 48 * 2**30


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


def tiled_decode(policy: str, capacity_bytes: int | None) -> bool:
    """Whether VAE decodes under `policy` on a GPU of `capacity_bytes` (None: the CPU) run in tiles (only on a
    GPU smaller than `TILED_DECODE_BELOW_BYTES`, and never under `resident`)."""
    return policy != "resident" and capacity_bytes is not None and capacity_bytes < TILED_DECODE_BELOW_BYTES


def gpu_capacity_bytes(device: str) -> int | None:
    """The memory of the GPU `device` within the process's cap; None on the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    index = torch.device(device).index
    gpu = torch.cuda.current_device() if index is None else index
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda _: 1.0)(gpu)
    return int(fraction * torch.cuda.get_device_properties(gpu).total_memory)


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
    """Stream `model` to `device` as it runs, from pinned CPU memory, one group ahead on a side stream
    (diffusers' group offloading): by blocks when its blocks are a list at its top level (a diffusers
    transformer), else layer by layer (a text encoder, whose blocks sit deeper). Blocks that fit in the
    GPU's free memory, less `STREAMING_WORKING_BYTES`, stay resident, spread evenly between the streamed
    ones so that each copy overlaps with the compute of the blocks before it."""
    import torch
    from diffusers.hooks import apply_group_offloading

    model.to("cpu")
    model._scenekit_streamed = True
    lists = [(name, child) for name, child in model.named_children() if isinstance(child, torch.nn.ModuleList)]
    if not lists:
        apply_group_offloading(model, offload_type="leaf_level", **_streaming(device))
        return
    name, blocks = max(lists, key=lambda item: len(item[1]))
    room = (free_gpu_bytes(device) or 0) - STREAMING_WORKING_BYTES
    resident = resident_blocks(len(blocks), _bytes(blocks[0]), room)
    model._scenekit_blocks = (name, resident, device)
    _stream_blocks(model, name, resident, device)
    log.info("memory: %d of %d blocks resident, %d streamed", len(resident), len(blocks), len(blocks) - len(resident))


def restream(model: Any) -> None:
    """Stream a block-streamed model again as `offload_blocks` chose, after layers were added to it or taken
    out (a LoRA's adapters): diffusers' group offloading copies the tensors each group had when it was applied
    (a tensor added since has no pinned copy to stream from), and deleting an adapter re-applies it over every
    block, the resident ones too."""
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.group_offloading import (
        _GROUP_OFFLOADING,
        _LAYER_EXECUTION_TRACKER,
        _LAZY_PREFETCH_GROUP_OFFLOADING,
    )

    split = getattr(model, "_scenekit_blocks", None)
    if split is None:
        return
    registry = HookRegistry.check_if_exists_or_initialize(model)
    for hook in (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING):
        registry.remove_hook(hook, recurse=True)
    _stream_blocks(model, *split)


def _streaming(device: str) -> dict[str, Any]:
    import torch

    return {
        "onload_device": torch.device(device),
        "offload_device": torch.device("cpu"),
        "use_stream": device.startswith("cuda"),
    }


def _stream_blocks(model: Any, name: str, resident: set[int], device: str) -> None:
    """Group offloading on the blocks of `model.<name>` but the `resident` ones, which go to `device`."""
    import torch
    from diffusers.hooks import apply_group_offloading

    blocks = getattr(model, name)
    setattr(model, name, torch.nn.ModuleList(b for i, b in enumerate(blocks) if i not in resident))
    try:  # hooks go on the streamed blocks only; the model keeps running every block in order
        apply_group_offloading(model, offload_type="block_level", num_blocks_per_group=1, **_streaming(device))
    finally:
        setattr(model, name, blocks)
    for index in resident:
        blocks[index].to(device)


def is_streamed(model: Any) -> bool:
    """Whether `model` runs streamed from CPU memory (`offload_blocks`): it holds no GPU memory between uses."""
    return bool(getattr(model, "_scenekit_streamed", False))


def resident_blocks(count: int, block_bytes: int, room: int) -> set[int]:
    """Indices of the blocks (of `count`, `block_bytes` each) that stay resident in `room` bytes, spread
    evenly: streamed blocks then have resident ones between them to overlap their copies with."""
    keep = max(0, min(count, room // max(block_bytes, 1)))
    streamed = count - keep
    return {i for i in range(count) if (i + 1) * streamed // count == i * streamed // count}


def _bytes(module: Any) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@contextmanager
def tiles(vae: Any, tiled: bool) -> Iterator[None]:
    """`vae` decodes in overlapping tiles, in space and in time, while inside (when `tiled`)."""
    if not tiled:
        yield
        return
    vae.enable_tiling()
    vae.use_framewise_decoding = True
    try:
        yield
    finally:
        vae.disable_tiling()
        vae.use_framewise_decoding = False
