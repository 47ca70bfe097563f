"""Context parallelism for the LTX-2 transformer: which tensors are split across ranks, as data.

diffusers 0.42.1 ships a ``_cp_plan`` for ``LTX2VideoTransformer3DModel`` that does not run on LTX-2:
it splits the outputs of ``rope`` on dim 1 of 3-D tensors, but LTX-2's ``rope_type="split"`` gives
``(B, heads, tokens, dim/2)`` (transformer_ltx2.py, ``LTX2AudioVideoRotaryPosEmbed.forward``: "(B,H,T,D//2)"),
so the split is skipped and the first attention fails on mismatched sizes; it leaves the rotary embedding of
the audio-to-video cross-attention (``cross_attn_rope``) whole; and it ignores per-token timesteps, which the
conditioned pipeline passes (one per video token). `ltx2_plan` is the plan scenekit applies instead, through
diffusers' own hooks (``apply_context_parallel``):

* the video tokens (``hidden_states``, per-token ``timestep``, both rotary embeddings of the video) are
  split into equal parts, one per rank, and ``proj_out``'s output is gathered again;
* the audio tokens and the text stay whole on every rank. Under Ulysses attention each rank then holds
  every audio or text key ``world_size`` times over; softmax over repeated keys equals softmax over the
  keys once, and the all-to-all hands each rank back its own copy of the audio queries, so the audio
  stream and both cross-attentions to the text are exact (the audio, a few hundred tokens against tens of
  thousands of video tokens, is computed on every rank).

Ulysses only: ring attention needs the attention's log-sum-exp, which diffusers' ``native`` backend does
not give ("Native attention does not support return_lse=True", attention_dispatch.py:876), and the
backends that do (flash) refuse attention masks. Ulysses cannot slice a mask by heads either (the LTX-2
processor repeats the text mask for every head, transformer_ltx2.py:262, and Ulysses gathers it only along
the keys, attention_dispatch.py:2572): `DropUniformMasks` drops text masks that mask nothing (LTX-2's
connectors, with their registers, always return such a mask) and refuses any other.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks import ModelHook

#: Hook name of `DropUniformMasks` in the transformer's diffusers hook registry.
MASK_HOOK = "scenekit_cp_uniform_masks"

_MASKS = ("encoder_attention_mask", "audio_encoder_attention_mask")


def ltx2_plan(transformer: Any) -> dict[str, Any]:
    """The context-parallel plan of an LTX-2 (or 2.3) transformer, a ``_cp_plan``-style mapping."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    # `split` rope: (B, heads, tokens, dim/2); `interleaved`: (B, tokens, dim)
    split_rope = transformer.config.rope_type == "split"
    rope_output = ContextParallelInput(
        split_dim=2 if split_rope else 1, expected_dims=4 if split_rope else 3, split_output=True
    )
    return {
        "": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False),
            # one timestep per video token (conditioned sampling); a (B,) timestep is left whole
            "timestep": ContextParallelInput(split_dim=1, expected_dims=2, split_output=False),
        },
        "rope": {0: rope_output, 1: rope_output},
        "cross_attn_rope": {0: rope_output, 1: rope_output},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


def heads_problem(transformer: Any, world_size: int) -> str | None:
    """Why ``transformer``'s attention heads cannot be split across ``world_size`` ranks (None: they can)."""
    heads = transformer.config.num_attention_heads, transformer.config.audio_num_attention_heads
    if any(count % world_size for count in heads):
        return f"Ulysses attention splits the heads ({heads[0]} video, {heads[1]} audio) across {world_size} GPUs: use a divisor"
    return None


def enable_context_parallel(transformer: Any, world_size: int) -> None:
    """Split ``transformer``'s video sequence across the ``world_size`` ranks of the running process group
    (Ulysses attention), once per loaded transformer."""
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.context_parallel import apply_context_parallel
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

    if getattr(transformer, "_parallel_config", None) is not None:
        return
    plan = ltx2_plan(transformer)
    config = ContextParallelConfig(ulysses_degree=world_size)
    if torch.distributed.get_backend() != "gloo":
        transformer.enable_parallelism(config=config, cp_plan=plan)
    else:
        # on the CPU: `enable_parallelism` picks `rank % torch.accelerator.device_count()` as the device, a
        # division by zero without an accelerator (modeling_utils.py:1719), and builds its mesh on the
        # accelerator; these are its steps for context parallelism, with a CPU mesh
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cpu", mesh_shape=config.mesh_shape, mesh_dim_names=config.mesh_dim_names)
        parallel = ParallelConfig(context_parallel_config=config)
        parallel.setup(torch.distributed.get_rank(), world_size, torch.device("cpu"), mesh=mesh)
        for module in transformer.modules():
            processor = getattr(module, "processor", None)
            if processor is not None and hasattr(processor, "_parallel_config"):
                processor._parallel_config = parallel
        apply_context_parallel(transformer, config, plan)
        transformer._parallel_config = parallel
    HookRegistry.check_if_exists_or_initialize(transformer).register_hook(DropUniformMasks(), MASK_HOOK)


class DropUniformMasks(ModelHook):
    """Drops text attention masks that add the same value to every key of a row (they change nothing);
    refuses masks that really mask, which Ulysses attention cannot apply (see the module's docstring)."""

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        for name in _MASKS:
            mask = kwargs.get(name)
            if mask is None:
                continue
            if not bool((mask.amin(dim=-1) == mask.amax(dim=-1)).all()):
                raise ValueError(
                    f"{name} masks some text tokens; diffusers' Ulysses attention cannot apply such a mask "
                    "(render this clip on one GPU)"
                )
            kwargs[name] = None
        return args, kwargs
