"""The operations of LTX-2 nodes: encode a prompt, sample latents, upsample them, decode them."""

from __future__ import annotations

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
from scenekit.media.video import read_frames
from scenekit.node_media import keep_audio, keep_frames
from scenekit.node_tensors import keep_tensors, output_tensors
from scenekit.ops import NodeOutput, RunContext, register
from scenekit.runtime.memory import tiles
from scenekit.runtime.speed import Numerics

EMBEDS_FILE = "embeds.safetensors"
LATENTS_FILE = "latents.safetensors"


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
    """One sampling stage: from noise (stage 1) or refining upsampled latents (stage 2)."""
    params = node.params
    pipe = POOL.pipeline(
        Path(node.meta["weights"]),
        node.meta.get("transformer_file"),
        params["precision"],
        Numerics(**params["numerics"]),
        node.meta.get("lora_file"),
    )
    _use_loras(node, pipe)
    embeds = recipe.expand_embeds(output_tensors(inputs["prompt"], EMBEDS_FILE))
    latents = output_tensors(inputs["latents"], LATENTS_FILE) if "latents" in inputs else None
    fixed_sigmas = params["sigmas"] is not None
    result = recipe.sample_latents(
        pipe,
        embeds,
        width=params["width"],
        height=params["height"],
        num_frames=params["frames"],
        frame_rate=float(Fraction(params["fps"])),
        seed=params["seed"],
        sigmas=params["sigmas"],
        num_inference_steps=params["steps"],
        guidance=params["guidance"],
        conditions=_conditions(node, inputs),
        latents=latents,
        noise_scale=params["noise_scale"] if latents is not None else None,
        on_step=ctx.step,
        use_dynamic_shifting=False if fixed_sigmas else None,
        use_cross_timestep=params["use_cross_timestep"],
        image_crf=params["crf"],
        **_control(node),
    )
    if params["drift_control"]:
        reference = output_tensors(inputs["reference"], LATENTS_FILE)["video"]
        result["video"] = adain(result["video"], reference, params["drift_control"])
    keep_tensors(ctx, LATENTS_FILE, result)


def _use_loras(node: Node, pipe: object) -> None:
    """The stage's LoRAs active at their weights: the profile's (loaded with the transformer) and the spec's
    (loaded beside it on first use)."""
    params = node.params
    adapters = (
        [] if params["lora"] is None else [(adapter_name_of_file(params["lora"]["file"]), params["lora"]["strength"])]
    )
    for entry in params.get("loras", []):
        asset = node.files[entry["file"]]
        adapter = adapter_name(asset.sha256)
        POOL.load_adapter(pipe, asset.path, adapter, params["precision"]["compute"])
        adapters.append((adapter, entry["weight"]))
    POOL.activate(pipe, adapters)


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
    """Spatial x2 upsampling of the video latents (audio latents pass through)."""
    ctx.step(0, 1)
    latents = output_tensors(inputs["latents"], LATENTS_FILE)
    folder = Path(node.meta["weights"])
    vae = POOL.component(folder, "vae", node.params["precision"])
    upsampler_folder = Path(node.meta.get("upsampler_weights", folder))
    upsampler = POOL.upsampler(upsampler_folder, node.meta["upsampler"], vae, node.params["precision"])
    latents["video"] = recipe.upsample_latents(upsampler, latents["video"])
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
