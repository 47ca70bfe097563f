"""One LTX-2 sampling stage across the GPUs of a rank group (`--gpus-per-clip N`).

The caller (the node's process) resolves the stage's inputs; every rank loads the same pipeline through its
own model pool, splits the transformer's video sequence across the group (`context_parallel`) and runs the
same `recipe.sample_latents` call. Rank 0 returns the latents and reports the steps; the caller keeps them
as the node's output, so the entry, its key and its files are the one-GPU render's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scenekit.ltx2 import recipe
from scenekit.ltx2.pool import POOL
from scenekit.runtime.memory import SETTINGS, use_memory_policy
from scenekit.runtime.parallel import Rank, rank_group
from scenekit.runtime.speed import Numerics


@dataclass(frozen=True)
class StageCall:
    """Everything a rank needs to run one sampling stage: where the models come from, and the call."""

    weights: Path
    transformer_file: str | None
    precision: dict[str, str]
    numerics: Numerics
    lora_file: str | None
    adapters: list[tuple[Path | None, str, float]]
    """(file, adapter, weight): the profile's LoRA (file None: loaded with the transformer), then the spec's."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """`recipe.sample_latents`' keyword arguments but ``on_step``."""
    memory: str = field(default_factory=lambda: SETTINGS.policy)


def split_problem(call: StageCall, world_size: int) -> str | None:
    """Why this stage runs on one GPU after all (None: it runs across ``world_size``)."""
    kwargs = call.kwargs
    if kwargs.get("references"):
        return "an IC-LoRA control adds reference tokens under their own attention mask"
    if any(frame != 0 for _, frame, _ in kwargs.get("conditions", ())):
        return "keyframes add tokens beside the video's"
    tokens = ((kwargs["num_frames"] - 1) // 8 + 1) * (kwargs["height"] // 32) * (kwargs["width"] // 32)
    if tokens % world_size:
        return f"{tokens} video tokens do not split into {world_size} equal parts"
    return None


def stage_pipeline(call: StageCall) -> Any:
    """The stage's pipeline from this process's pool, its LoRAs active at their weights."""
    pipe = POOL.pipeline(call.weights, call.transformer_file, call.precision, call.numerics, call.lora_file)
    needed = frozenset(adapter for _, adapter, _ in call.adapters)
    for path, adapter, _ in call.adapters:
        if path is not None:
            POOL.load_adapter(pipe, path, adapter, call.precision["compute"], needed)
    POOL.activate(pipe, [(adapter, weight) for _, adapter, weight in call.adapters])
    return pipe


def sample_across(call: StageCall, world_size: int, on_step: Any) -> dict[str, torch.Tensor]:
    """Run the stage on the ``world_size`` ranks of this process's group; rank 0's latents."""
    return rank_group(world_size).run(_sample_on_rank, call, on_message=lambda step: on_step(*step))


def _sample_on_rank(rank: Rank, call: StageCall) -> dict[str, torch.Tensor] | None:
    """One rank's share of the stage (run in the rank's process)."""
    from scenekit.ltx2.context_parallel import enable_context_parallel, heads_problem

    use_memory_policy(call.memory)
    pipe = stage_pipeline(call)
    problem = heads_problem(pipe.transformer, rank.world_size)
    if problem:
        raise ValueError(problem)
    enable_context_parallel(pipe.transformer, rank.world_size)
    result = recipe.sample_latents(pipe, **call.kwargs, on_step=lambda done, total: rank.send((done, total)))
    if rank.rank != 0:
        return None
    # gathered outputs are diffusers' async collective tensors: wait for them and hand back plain CPU tensors
    return {name: torch.empty(value.shape, dtype=value.dtype).copy_(value) for name, value in result.items()}
