"""The operations of LTX-Video nodes: encode a prompt, sample a pass, upsample, decode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from scenekit.conditioning import condition_frames, context_frames
from scenekit.graph.nodes import Node
from scenekit.ltxv import recipe
from scenekit.ltxv.pool import POOL
from scenekit.node_media import keep_frames
from scenekit.node_tensors import keep_tensors, output_tensors
from scenekit.ops import NodeOutput, RunContext, register
from scenekit.runtime.memory import tiles
from scenekit.runtime.speed import Numerics

EMBEDS_FILE = "embeds.safetensors"
LATENTS_FILE = "latents.safetensors"


@register("ltxv.encode_prompt", version=1)
def encode_prompt(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """T5 embeddings of the prompt (and of the negative prompt when the clip uses CFG)."""
    params = node.params
    ctx.step(0, 1)
    pipe = POOL.text_pipeline(Path(node.meta["weights"]), params["precision"])
    embeds = recipe.encode_prompt(
        pipe, params["prompt"], params["negative_prompt"], max_sequence_length=params["max_sequence_length"]
    )
    keep_tensors(ctx, EMBEDS_FILE, embeds)
    ctx.step(1, 1)


@register("ltxv.sample", version=1)
def sample(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """One pass: from noise (pass 1) or refining upsampled latents (pass 2)."""
    params = node.params
    pipe = POOL.pipeline(
        Path(node.meta["weights"]), node.meta["checkpoint"], params["precision"], Numerics(**params["numerics"])
    )
    embeds = output_tensors(inputs["prompt"], EMBEDS_FILE)
    latents = output_tensors(inputs["latents"], LATENTS_FILE)["latents"] if "latents" in inputs else None
    result = recipe.sample_pass(
        pipe,
        embeds,
        width=params["width"],
        height=params["height"],
        num_frames=params["frames"],
        frame_rate=float(Fraction(params["fps"])),
        seed=params["seed"],
        timesteps=params["timesteps"],
        guidance=params["guidance"],
        conditions=_conditions(node, inputs),
        latents=latents,
        image_cond_noise_scale=params["image_cond_noise_scale"],
        step_cache=params["step_cache"],
        on_step=ctx.step,
    )
    if params["drift_control"]:
        reference = output_tensors(inputs["reference"], LATENTS_FILE)["latents"]
        result["latents"] = recipe.adain(result["latents"], reference, params["drift_control"])
    keep_tensors(ctx, LATENTS_FILE, result)


def _conditions(node: Node, inputs: dict[str, NodeOutput]) -> list[tuple[list[Any], int, float]]:
    """(prepared frames, pixel frame, strength): the continuation context first, then the clip's conditioning."""
    params = node.params
    size = (params["target_width"], params["target_height"], params["crf"])
    context = context_frames(node, inputs)
    found = [] if context is None else [(recipe.prepare_frames(context, *size), 0, params["context_strength"])]
    for index, entry in enumerate(params["conditions"]):
        frames = recipe.prepare_frames(condition_frames(node, index, inputs), *size)
        found.append((frames, entry["at"], entry["strength"]))
    return found


@register("ltxv.upsample", version=1)
def upsample(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Spatial x2 latent upsampling with AdaIN towards pass 1."""
    ctx.step(0, 1)
    latents = output_tensors(inputs["latents"], LATENTS_FILE)["latents"]
    meta, compute = node.meta, node.params["precision"]
    pipe = POOL.upsampler(Path(meta["weights"]), meta["checkpoint"], meta["upsampler"], compute)
    keep_tensors(ctx, LATENTS_FILE, {"latents": recipe.upsample(pipe, latents, node.params["adain"])})
    ctx.step(1, 1)


@register("ltxv.decode", version=1)
def decode(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Frames from the last pass's latents (tone-mapped first where the profile says), at the clip's size."""
    params = node.params
    ctx.step(0, 1)
    pipe = POOL.decoder(Path(node.meta["weights"]), node.meta["checkpoint"], params["precision"])
    tensors = output_tensors(inputs["latents"], LATENTS_FILE)
    with tiles(pipe.vae, params.get("tiled", False)):
        frames = recipe.decode(
            pipe,
            recipe.tone_map(tensors["latents"], params["tone_map"]),
            tensors["rng"],
            timestep=params["timestep"],
            noise_scale=params["noise_scale"],
            width=params["width"],
            height=params["height"],
            dtype=getattr(torch, params["precision"]),
        )
    if frames.shape != (params["frames"], params["height"], params["width"], 3):
        raise RuntimeError(
            f"decoded {frames.shape}, expected {(params['frames'], params['height'], params['width'], 3)}"
        )
    keep_frames(ctx, frames, Fraction(params["fps"]))
    ctx.step(1, 1)
