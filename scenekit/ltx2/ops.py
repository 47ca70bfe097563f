"""The operations of LTX-2 nodes: encode a prompt, sample latents, upsample them, decode them."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from scenekit.conditioning import condition_frames, context_frames
from scenekit.graph.nodes import Node
from scenekit.ltx2 import recipe
from scenekit.ltx2.drift import adain
from scenekit.ltx2.loras import adapter_name
from scenekit.ltx2.pool import POOL, adapter_name_of_file
from scenekit.ltx2.ranks import StageCall, sample_across, split_problem, stage_pipeline
from scenekit.media.video import read_frames
from scenekit.node_media import keep_audio, keep_frames
from scenekit.node_tensors import keep_tensors, output_tensors
from scenekit.ops import NodeOutput, RunContext, register
from scenekit.runtime.memory import tiles
from scenekit.runtime.parallel import gpus_per_clip
from scenekit.runtime.speed import Numerics

EMBEDS_FILE = "embeds.safetensors"
LATENTS_FILE = "latents.safetensors"

log = logging.getLogger(__name__)


@register("ltx2.encode_prompt", version=2)
def encode_prompt(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Prompt (and negative prompt) embeddings from the text encoder, stored without padding tokens."""
    params = node.params
    ctx.step(0, 1)
    pipe = POOL.text_pipeline(Path(node.meta["weights"]), params["precision"])
    embeds = recipe.encode_prompt(
        pipe,
        params["prompt"],
        params["negative_prompt"],
        device=POOL.device,
        max_sequence_length=params["max_sequence_length"],
    )
    keep_tensors(ctx, EMBEDS_FILE, recipe.compact_embeds(embeds))
    ctx.step(1, 1)


@register("ltx2.sample", version=1)
def sample(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """One sampling stage: from noise (stage 1) or refining upsampled latents (stage 2); across the GPUs of
    a rank group with `--gpus-per-clip N` (the same latents, to float rounding)."""
    params = node.params
    call = StageCall(
        Path(node.meta["weights"]),
        node.meta.get("transformer_file"),
        params["precision"],
        Numerics(**params["numerics"]),
        node.meta.get("lora_file"),
        _adapters(node),
        _sample_kwargs(node, inputs),
    )
    world_size = gpus_per_clip()
    problem = split_problem(call, world_size) if world_size > 1 else None
    if problem:
        log.warning("%s runs on one GPU: %s", node.id, problem)
    if world_size > 1 and not problem:
        POOL.release_text_encoder()  # the GPU of rank 0 is this process's too
        result = sample_across(call, world_size, ctx.step)
    else:
        result = _sample_here(call, ctx)
    if params["drift_control"]:
        reference = output_tensors(inputs["reference"], LATENTS_FILE)["video"]
        result["video"] = adain(result["video"], reference, params["drift_control"])
    keep_tensors(ctx, LATENTS_FILE, result)


def _sample_kwargs(node: Node, inputs: dict[str, NodeOutput]) -> dict[str, Any]:
    """`recipe.sample_latents`' arguments for the stage, but the pipeline and ``on_step``."""
    params = node.params
    latents = output_tensors(inputs["latents"], LATENTS_FILE) if "latents" in inputs else None
    fixed_sigmas = params["sigmas"] is not None
    return {
        "embeds": recipe.expand_embeds(output_tensors(inputs["prompt"], EMBEDS_FILE)),
        "width": params["width"],
        "height": params["height"],
        "num_frames": params["frames"],
        "frame_rate": float(Fraction(params["fps"])),
        "seed": params["seed"],
        "sigmas": params["sigmas"],
        "num_inference_steps": params["steps"],
        "guidance": params["guidance"],
        "conditions": _conditions(node, inputs),
        "latents": latents,
        "noise_scale": params["noise_scale"] if latents is not None else None,
        "use_dynamic_shifting": False if fixed_sigmas else None,
        "use_cross_timestep": params["use_cross_timestep"],
        "image_crf": params["crf"],
        **_control(node),
    }


def _sample_here(call: StageCall, ctx: RunContext) -> dict[str, Any]:
    """The stage in this process, on its device."""
    return recipe.sample_latents(stage_pipeline(call), **call.kwargs, on_step=ctx.step)


def _adapters(node: Node) -> list[tuple[Path | None, str, float]]:
    """(file, adapter, weight) of the stage's LoRAs: the profile's (file None: loaded with the transformer),
    then the spec's (loaded beside it on first use)."""
    params = node.params
    adapters: list[tuple[Path | None, str, float]] = (
        []
        if params["lora"] is None
        else [(None, adapter_name_of_file(params["lora"]["file"]), params["lora"]["strength"])]
    )
    for entry in params.get("loras", []):
        asset = node.files[entry["file"]]
        adapters.append((asset.path, adapter_name(asset.sha256), entry["weight"]))
    return adapters


def _control(node: Node) -> dict[str, Any]:
    """The IC-LoRA control video's frames for the recipe (none without a control)."""
    control = node.params.get("control")
    if control is None:
        return {}
    frames = read_frames(node.files[control["file"]].path, 0, control["frames"])
    return {"references": [(frames, control["strength"])], "reference_downscale_factor": control["downscale"]}


def _conditions(node: Node, inputs: dict[str, NodeOutput]) -> list[tuple[np.ndarray, int, float]]:
    """(frames, pixel frame, strength) for the pipeline: the continuation context first, then conditioning."""
    context = context_frames(node, inputs)
    found = [] if context is None else [(context, 0, 1.0)]
    for index, entry in enumerate(node.params["conditions"]):
        found.append((condition_frames(node, index, inputs), entry["at"], entry["strength"]))
    return found


@register("ltx2.upsample", version=1)
def upsample(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Spatial upsampling of the video latents by the node's `factor` (audio latents pass through)."""
    ctx.step(0, 1)
    latents = output_tensors(inputs["latents"], LATENTS_FILE)
    folder = Path(node.meta["weights"])
    vae = POOL.component(folder, "vae", node.params["precision"])
    upsampler_folder = Path(node.meta.get("upsampler_weights", folder))
    upsampler = POOL.upsampler(upsampler_folder, node.meta["upsampler"], vae, node.params["precision"])
    before = latents["video"].shape
    latents["video"] = recipe.upsample_latents(upsampler, latents["video"])
    expected = (*before[:3], *(side * Fraction(str(node.params["factor"])) for side in before[3:]))
    if latents["video"].shape != expected:
        raise RuntimeError(f"{node.meta['upsampler']} upsampled {tuple(before)} to {tuple(latents['video'].shape)}")
    keep_tensors(ctx, LATENTS_FILE, latents)
    ctx.step(1, 1)


@register("ltx2.decode", version=2)
def decode(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
    """Frames and audio from the final latents."""
    params = node.params
    ctx.step(0, 1)
    pipe = POOL.decoder(Path(node.meta["weights"]), params["precision"])
    latents = output_tensors(inputs["latents"], LATENTS_FILE)
    with tiles(pipe.vae, params.get("tiled", False)):
        frames, audio, sample_rate = recipe.decode(
            pipe,
            latents,
            decode_timestep=params["timestep"],
            decode_noise_scale=params["noise_scale"],
            seed=params["seed"],
        )
    if frames.shape != (params["frames"], params["height"], params["width"], 3):
        raise RuntimeError(
            f"decoded {frames.shape}, expected {(params['frames'], params['height'], params['width'], 3)}"
        )
    keep_frames(ctx, frames, Fraction(params["fps"]))
    keep_audio(ctx, audio, sample_rate)
    ctx.step(1, 1)
