"""LTX-Video 0.9.x multi-scale generation split into cacheable steps, on diffusers' `LTXConditionPipeline`
and `LTXLatentUpsamplePipeline` (Lightricks' `LTXMultiScalePipeline`, top to bottom):

    embeds = encode_prompt(pipe, prompt, negative, max_sequence_length=256)
    first  = sample_pass(pipe, embeds, width=w1, height=h1, ..., timesteps=FIRST)     # w1, h1 = pass_size(...)
    up     = upsample(upsample_pipe, first["latents"], adain=1.0)
    second = sample_pass(pipe, embeds, width=2 * w1, height=2 * h1, ..., timesteps=SECOND, latents=up)
    frames = decode(pipe, tone_map(second["latents"], 0.6), second["rng"], timestep=0.05, noise_scale=0.025,
                    width=w, height=h, dtype=torch.bfloat16)

Latents are diffusers' own between the calls: unpacked `[1, C, F_lat, h, w]`, normalised, float32. Each pass
seeds its own CPU generator with the clip's seed (so a pass can be cached on its own); the second pass also
returns the generator's state, from which `decode` draws the decode noise exactly as the pipeline would after
sampling. So a split render equals the direct calls bit for bit (`tests/test_ltxv_tiny.py`): the first pass
called with `output_type="latent"`, the upsampler, the second pass called with `output_type="pt"`, and
the bilinear resize to the target size (Lightricks' multi-scale pipeline ends with it; pass 2 runs at twice
the rounded-down pass-1 size). The tone map Lightricks applies after pass 2 (`tone_map_compression_ratio`)
has no place in diffusers' pass, so with a tone map `decode` equals the direct call on tone-mapped latents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

SPATIAL = 32
TEMPORAL = 8


def pass_size(width: int, height: int, downscale: float) -> tuple[int, int]:
    """Pass-1 size: `downscale` of the target, rounded down to multiples of 32 (pass 2 runs at twice it)."""
    w, h = int(width * downscale), int(height * downscale)
    return w - w % SPATIAL, h - h % SPATIAL


def prepare_frames(frames: np.ndarray, width: int, height: int, crf: int) -> list[Any]:
    """Conditioning frames as Lightricks' loader prepares them: centre-cropped to the target's aspect,
    resized, blurred (3x3 Gaussian, sigma 1) and each re-compressed with H.264 at `crf` (0: none).
    Returns PIL images at `width` x `height` (the pipeline resizes them to each pass's size)."""
    import torch.nn.functional as F
    from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf
    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    _n, h, w = frames.shape[:3]
    if w * height > h * width:  # too wide: crop the sides
        crop = h * width // height
        frames = frames[:, :, (w - crop) // 2 : (w - crop) // 2 + crop]
    else:
        crop = w * height // width
        frames = frames[:, (h - crop) // 2 : (h - crop) // 2 + crop]
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    pixels = F.interpolate(pixels, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    pixels = _blur(pixels)
    out = pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(apply_image_conditioning_crf(frame, crf)) for frame in out]


def _blur(pixels: torch.Tensor) -> torch.Tensor:
    """torchvision's `gaussian_blur(kernel_size=3, sigma=1.0)` (reflect padding), per channel."""
    import torch.nn.functional as F

    weights = torch.exp(-0.5 * torch.tensor([-1.0, 0.0, 1.0]) ** 2)
    weights = weights / weights.sum()
    kernel = (weights[:, None] * weights[None, :]).expand(pixels.shape[1], 1, 3, 3)
    padded = F.pad(pixels, (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernel, groups=pixels.shape[1])


@torch.no_grad()
def encode_prompt(
    pipe: Any, prompt: str, negative_prompt: str | None, *, max_sequence_length: int
) -> dict[str, torch.Tensor]:
    """T5 embeddings and masks of the prompt (and the negative prompt when it is not None: CFG needs it)."""
    embeds, mask, negative, negative_mask = pipe.encode_prompt(
        prompt=prompt,
        negative_prompt=negative_prompt,
        do_classifier_free_guidance=negative_prompt is not None,
        max_sequence_length=max_sequence_length,
        device=pipe._execution_device,
    )
    out = {"prompt_embeds": embeds, "prompt_attention_mask": mask}
    if negative_prompt is not None:
        out |= {"negative_prompt_embeds": negative, "negative_prompt_attention_mask": negative_mask}
    return out


def schedule(
    timesteps: Sequence[float] | None, steps: int | None, skip_initial: int = 0, skip_final: int = 0
) -> list[float]:
    """A pass's timesteps in [0, 1]: as given, or diffusers' linear-quadratic schedule of `steps`, less the
    first `skip_initial` and last `skip_final` (the dev configs' `skip_*_inference_steps`)."""
    from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule

    full = list(timesteps) if timesteps is not None else [float(t) for t in linear_quadratic_schedule(steps)]
    kept = full[skip_initial : len(full) - skip_final]
    if not kept:
        raise ValueError("no sampling steps left after skipping")
    return kept


def _entry(value: Any, timestep: float, bounds: list[float] | None) -> Any:
    """A scheduled setting at `timestep` (in [0, 1]): a constant, or the entry of the first bound <= it (the
    last entry below every bound), as Lightricks' pipeline maps `guidance_timesteps`."""
    if not isinstance(value, list) or bounds is None:
        return value
    return value[next((i for i, bound in enumerate(bounds) if bound <= timestep), len(bounds) - 1)]


def _at(value: float | list[float], timestep: float, bounds: list[float] | None) -> float:
    """A guidance scale at `timestep`: a constant, or the schedule's entry."""
    return float(_entry(value, timestep, bounds))


def _blocks(blocks: list[int] | list[list[int]], timestep: float, bounds: list[float] | None) -> list[int]:
    """The STG blocks at `timestep`: one list for every step, or a list per schedule interval."""
    if blocks and isinstance(blocks[0], list):
        return list(_entry(blocks, timestep, bounds))
    return list(blocks)  # type: ignore[arg-type]  # a flat list of block indices


class _Guided(float):
    """A CFG scale of 1 that keeps the pipeline's unconditional batch (a schedule turns CFG on later)."""

    def __gt__(self, other: object) -> bool:
        return True if other == 1.0 else float(self) > other  # type: ignore[operator]


def sample_pass(
    pipe: Any,
    embeds: dict[str, torch.Tensor],
    *,
    width: int,
    height: int,
    num_frames: int,
    frame_rate: float,
    seed: int,
    timesteps: list[float],
    guidance: dict[str, Any],
    conditions: Sequence[tuple[list[Any], int, float]] = (),
    latents: torch.Tensor | None = None,
    image_cond_noise_scale: float = 0.15,
    step_cache: float | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """One pass of `LTXConditionPipeline`, returning `{"latents", "rng"}` (the generator's state after it).

    `timesteps` in [0, 1] (descending). With `latents` (a refining pass) they are re-noised to `timesteps[0]`
    first. `guidance`: `cfg`, `rescale`, `stg` (constants, or lists by the intervals of its `timesteps` bounds),
    `stg_blocks` (the blocks STG perturbs: one list, or one per interval; `scenekit.ltxv.stg`) and
    `cfg_star_rescale`, combined as Lightricks' pipeline does (`scenekit.ltxv.guidance`).
    `step_cache`: a threshold for diffusers' First Block Cache (a step whose first block's residual moved
    less than it reuses the last computed residual of the others), or None for every step in full.
    `conditions`: (PIL frames from `prepare_frames`, pixel frame, strength); several frames at frame 0 are a
    continuation, a single frame anywhere a keyframe, several frames at a multiple of 8 a video keyframe.
    """
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    from scenekit.ltxv.guidance import GuidanceState, guided_steps

    cfg, rescale, bounds = guidance.get("cfg", 1.0), guidance.get("rescale", 0.0), guidance.get("timesteps")
    stg, stg_blocks = guidance.get("stg", 0.0), guidance.get("stg_blocks", [])
    guided = any(v > 1.0 for v in (cfg if isinstance(cfg, list) else [cfg]))
    if guided and "negative_prompt_embeds" not in embeds:
        raise ValueError("CFG is on but the embeddings have no negative prompt")
    device = pipe._execution_device
    kwargs: dict[str, Any] = {k: v.to(device) for k, v in embeds.items()}
    if not guided:
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("negative")}
    items = [
        LTXVideoCondition(image=frames[0], frame_index=at, strength=strength)
        if len(frames) == 1
        else LTXVideoCondition(video=list(frames), frame_index=at, strength=strength)
        for frames, at, strength in conditions
    ]
    if items:
        kwargs["conditions"] = items
    steps = [t * 1000.0 for t in timesteps]
    if latents is not None:  # diffusers re-noises given latents to the first kept timestep of a longer list
        steps = [1000.0, *steps]
        kwargs["denoise_strength"] = (len(timesteps) + 0.5) / (len(timesteps) + 1)
        kwargs["latents"] = latents.to(device=device, dtype=torch.float32)

    def scale(timestep: float) -> float:
        value = _at(cfg, timestep, bounds)
        return _Guided(value) if guided and value <= 1.0 else value

    state = GuidanceState(batched=guided, cfg_star=bool(guidance.get("cfg_star_rescale", False)))

    def at_step(timestep: float) -> None:
        state.cfg, state.stg = _at(cfg, timestep, bounds), _at(stg, timestep, bounds)
        state.rescale, state.blocks = _at(rescale, timestep, bounds), _blocks(stg_blocks, timestep, bounds)

    def callback(p: Any, index: int, t: torch.Tensor, tensors: dict[str, Any]) -> dict[str, Any]:
        if index + 1 < len(timesteps):
            p._guidance_scale = scale(timesteps[index + 1])
            at_step(timesteps[index + 1])
        if on_step is not None:
            on_step(index + 1, len(timesteps))
        return {}

    at_step(timesteps[0])
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with step_caching(pipe.transformer, step_cache), guided_steps(pipe.transformer, state):
        (out,) = pipe(
            **kwargs,
            width=width,
            height=height,
            num_frames=num_frames,
            frame_rate=frame_rate,
            timesteps=steps,
            guidance_scale=scale(timesteps[0]),
            guidance_rescale=0.0,  # the guided prediction is rescaled already (`scenekit.ltxv.guidance`)
            image_cond_noise_scale=image_cond_noise_scale,
            generator=generator,
            output_type="latent",
            return_dict=False,
            callback_on_step_end=callback,
        )
    return {"latents": out.float(), "rng": generator.get_state()}


@contextmanager
def step_caching(transformer: Any, threshold: float | None) -> Iterator[None]:
    """diffusers' First Block Cache on `transformer` while inside (nothing for None): the model is shared
    by every clip in the process, so the cache goes with the pass that asked for it."""
    from diffusers.hooks import FirstBlockCacheConfig

    if threshold is None:
        yield
        return
    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    try:
        yield
    finally:
        transformer.disable_cache()


@torch.no_grad()
def upsample(upsample_pipe: Any, latents: torch.Tensor, adain: float) -> torch.Tensor:
    """Spatial x2 latent upsampling, with AdaIN towards the input latents (normalised in and out)."""
    (out,) = upsample_pipe(latents=latents, adain_factor=adain, output_type="latent", return_dict=False)
    return out.float()


def adain(latents: torch.Tensor, reference: torch.Tensor, factor: float) -> torch.Tensor:
    """Move each channel's mean and std of `latents` towards `reference`'s by `factor` (colour drift control)."""
    from diffusers import LTXLatentUpsamplePipeline

    if factor <= 0:
        return latents
    matched: torch.Tensor = LTXLatentUpsamplePipeline.adain_filter_latent(None, latents, reference.to(latents), factor)
    return matched


def tone_map(latents: torch.Tensor, compression: float) -> torch.Tensor:
    """Lightricks' latent tone map (sigmoid compression of large magnitudes); 0 leaves the latents as they are."""
    from diffusers import LTXLatentUpsamplePipeline

    if compression <= 0:
        return latents
    mapped: torch.Tensor = LTXLatentUpsamplePipeline.tone_map_latents(None, latents, compression)
    return mapped


@torch.no_grad()
def decode(
    pipe: Any,
    latents: torch.Tensor,
    rng: torch.Tensor,
    *,
    timestep: float,
    noise_scale: float,
    width: int,
    height: int,
    dtype: torch.dtype,
) -> np.ndarray:
    """Frames (uint8 `(F, height, width, 3)`) from a pass's latents, as `LTXConditionPipeline` decodes them
    (de-normalised, mixed with `noise_scale` of noise drawn from the generator state `rng`, decoded at
    `timestep`), then resized bilinearly to the target size as Lightricks' multi-scale pipeline does."""
    from diffusers.utils.torch_utils import randn_tensor

    vae, device = pipe.vae, pipe._execution_device
    latents = latents.to(device=device, dtype=torch.float32)
    latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    latents = latents.to(dtype)
    step = None
    if vae.config.timestep_conditioning:
        generator = torch.Generator(device="cpu")
        generator.set_state(rng)
        noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=latents.dtype)
        step = torch.tensor([timestep], device=device, dtype=latents.dtype)
        scale = torch.tensor([noise_scale], device=device, dtype=latents.dtype)[:, None, None, None, None]
        latents = (1 - scale) * latents + scale * noise
    video = vae.decode(latents, step, return_dict=False)[0]
    video = pipe.video_processor.postprocess_video(video, output_type="pt")[0]  # (F, 3, h, w) in [0, 1]
    return to_frames(video, width, height)


def to_frames(video: torch.Tensor, width: int, height: int) -> np.ndarray:
    """`(F, 3, h, w)` pixels in [0, 1] resized to the target (bilinear) as uint8 `(F, height, width, 3)`."""
    import torch.nn.functional as F

    if video.shape[-2:] != (height, width):
        video = F.interpolate(video.float(), size=(height, width), mode="bilinear", align_corners=False)
    return (video.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
