"""LTX-2 generation split into cacheable steps, on top of diffusers' pipelines.

One ``LTX2Pipeline.__call__`` does four things: encode the prompt, sample
latents, (optionally) refine them at a higher resolution, decode them to frames
and audio. A render cache wants those as separate steps, each with its own
inputs and a storable tensor output. The functions here are those steps. Each
takes an already loaded pipeline and does no file I/O.

    embeds = encode_prompt(pipe, prompt, negative, device=None, max_sequence_length=1024)
    lat    = sample_latents(pipe, embeds, width=..., height=..., num_frames=..., frame_rate=...,
                            seed=..., num_inference_steps=30, guidance={...})
    # two-stage (optional):
    lat["video"] = upsample_latents(upsample_pipe, lat["video"])
    lat    = sample_latents(pipe, embeds_without_negative, ..., width=2 * w, height=2 * h,
                            sigmas=STAGE_2_DISTILLED_SIGMA_VALUES, latents=lat,
                            noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0], guidance=None,
                            use_dynamic_shifting=False)
    frames, audio, sample_rate = decode(pipe, lat, decode_timestep=0.0, decode_noise_scale=None, seed=...)

Splitting is exact: with the same settings and seed, ``encode_prompt`` ->
``sample_latents`` -> ``decode`` gives the same frames and audio as one direct
pipeline call (checked by ``tests/test_ltx2_tiny.py``).

Latent conventions (these are the diffusers pipelines' own, with
``output_type="latent"``):

* video latents: ``[B, C, F_lat, H / 32, W / 32]`` (unpacked, 5-D), with
  ``F_lat = (num_frames - 1) // 8 + 1``, *de-normalised*, i.e. in the raw VAE
  latent space (the pipeline normalises them again when they come back in);
* audio latents: ``[B, C_audio, L, M]`` (unpacked, 4-D), de-normalised, with
  ``L = round(num_frames / frame_rate * sample_rate / hop / 4)`` (25 per second
  for LTX-2) and ``M = mel_bins / 4``.

Real LTX-2.0: ``C = 128``, ``C_audio = 8``, ``M = 16``; audio decodes to
``(4 * L - 3) * 240`` stereo samples at 24 kHz.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "GUIDANCE_KEYS",
    "GUIDANCE_OFF",
    "compact_embeds",
    "decode",
    "encode_prompt",
    "expand_embeds",
    "keyframe_pixel_position",
    "latent_index_for_pixel_frame",
    "sample_latents",
    "upsample_latents",
]

#: Guidance settings that switch every guidance term off (one transformer pass per step).
GUIDANCE_OFF: dict[str, Any] = {
    "cfg": 1.0,
    "stg": 0.0,
    "stg_blocks": [],
    "rescale": 0.0,
    "modality": 1.0,
    "audio_cfg": 1.0,
    "audio_stg": 0.0,
    "audio_rescale": 0.0,
    "audio_modality": 1.0,
}

#: Keys accepted in the ``guidance`` dict of :func:`sample_latents`.
GUIDANCE_KEYS = frozenset(GUIDANCE_OFF)

# Pipeline keyword for each guidance key.
_GUIDANCE_KWARGS = {
    "cfg": "guidance_scale",
    "stg": "stg_scale",
    "rescale": "guidance_rescale",
    "modality": "modality_scale",
    "audio_cfg": "audio_guidance_scale",
    "audio_stg": "audio_stg_scale",
    "audio_rescale": "audio_guidance_rescale",
    "audio_modality": "audio_modality_scale",
}

_TEMPORAL_RATIO = 8  # LTX-2 VAE: 8 pixel frames per latent frame (after the first)


class _Zero(float):
    """A 0.0 that is truthy.

    The pipelines resolve audio settings as ``audio_value or video_value``, so a
    plain ``0.0`` for ``audio_stg``/``audio_rescale`` would silently become the
    video value. This keeps an explicit zero a zero; arithmetic is unchanged.
    """

    def __bool__(self) -> bool:
        return True


def latent_index_for_pixel_frame(pixel_frame: int, temporal_ratio: int = _TEMPORAL_RATIO) -> int:
    """Latent frame index that holds pixel frame ``pixel_frame``.

    The causal LTX-2 VAE maps pixel frame 0 to latent 0 and pixel frames
    ``8k-7 .. 8k`` to latent ``k``. So pixel ``p >= 1`` -> ``(p - 1) // 8 + 1``.
    This is the ``index`` that ``LTX2VideoCondition`` expects.
    """
    if pixel_frame < 0:
        raise ValueError(f"pixel frame index must be >= 0, got {pixel_frame}")
    if pixel_frame == 0:
        return 0
    return (pixel_frame - 1) // temporal_ratio + 1


def keyframe_pixel_position(pixel_frame: int, temporal_ratio: int = _TEMPORAL_RATIO) -> int:
    """Pixel frame at which a condition requested at ``pixel_frame`` really lands.

    ``LTX2ConditionPipeline`` places a condition with latent index ``k > 0`` at
    pixel frame ``(k - 1) * 8 + 1`` (the first pixel frame of that latent). Only
    pixel frames 0, 1, 9, 17, ... are hit exactly; any other frame is moved
    back by up to 7 frames.
    """
    k = latent_index_for_pixel_frame(pixel_frame, temporal_ratio)
    return 0 if k == 0 else (k - 1) * temporal_ratio + 1


def _device_of(pipe, device) -> torch.device:
    return torch.device(device) if device is not None else pipe._execution_device


@torch.no_grad()
def encode_prompt(
    pipe,
    prompt: str,
    negative_prompt: str | None,
    *,
    device: str | torch.device | None = None,
    max_sequence_length: int,
) -> dict[str, torch.Tensor]:
    """Run the Gemma text encoder once; return what ``__call__`` takes back.

    Returns a dict with ``prompt_embeds`` ``[1, S, D * (N + 1)]`` (the stacked
    hidden states of all N Gemma layers plus the embeddings; D=3840, N=48 for
    LTX-2.0/2.3) and ``prompt_attention_mask`` ``[1, S]`` (int64, left padded),
    with ``S = max_sequence_length``. If ``negative_prompt`` is not None (use ``""``
    for "no negative prompt"), the dict also holds ``negative_prompt_embeds`` and
    ``negative_prompt_attention_mask`` of the same shapes; these are needed when
    classifier-free guidance is on (``cfg > 1`` or ``audio_cfg > 1``).

    The connectors are *not* run here; they run inside each sampling call
    (they are cheap), exactly as in the pipeline. ``max_sequence_length`` must be
    a multiple of the connectors' learnable-register count (128 for LTX-2).
    """
    device = _device_of(pipe, device)
    use_negative = negative_prompt is not None
    embeds, mask, neg_embeds, neg_mask = pipe.encode_prompt(
        prompt=prompt,
        negative_prompt=negative_prompt,
        do_classifier_free_guidance=use_negative,
        num_videos_per_prompt=1,
        max_sequence_length=max_sequence_length,
        device=device,
    )
    out = {"prompt_embeds": embeds, "prompt_attention_mask": mask}
    if use_negative:
        out["negative_prompt_embeds"] = neg_embeds
        out["negative_prompt_attention_mask"] = neg_mask
    return out


_EMBEDS_AND_MASKS = (
    ("prompt_embeds", "prompt_attention_mask"),
    ("negative_prompt_embeds", "negative_prompt_attention_mask"),
)


def compact_embeds(embeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`encode_prompt`'s output without its padding tokens: ``*_embeds`` become ``[n, D]``
    (the ``n`` positions the mask keeps, in order); the masks stay as they are.

    Lossless: the connectors zero every padded position before using the embeddings (LTX-2.0's
    masked mean/range norm, LTX-2.3's masked RMS norm) and then replace them with learned registers,
    so their values never matter. A short prompt shrinks from ``1024`` to a few dozen positions
    (385 MB -> a few MB for LTX-2.0). :func:`expand_embeds` restores the pipeline's shapes.
    """
    out: dict[str, torch.Tensor] = {}
    for embeds_name, mask_name in _EMBEDS_AND_MASKS:
        if embeds_name not in embeds:
            continue
        values, mask = embeds[embeds_name], embeds[mask_name]
        if values.shape[0] != 1:
            raise ValueError("compact_embeds handles one prompt (batch size 1)")
        out[embeds_name] = values[mask.bool()]
        out[mask_name] = mask
    return out


def expand_embeds(compact: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`compact_embeds`: ``[1, S, D]`` embeddings with zeros at padded positions."""
    out: dict[str, torch.Tensor] = {}
    for embeds_name, mask_name in _EMBEDS_AND_MASKS:
        if embeds_name not in compact:
            continue
        values, mask = compact[embeds_name], compact[mask_name]
        full = values.new_zeros((*mask.shape, values.shape[-1]))
        full[mask.bool()] = values
        out[embeds_name] = full
        out[mask_name] = mask
    return out


def _guidance_kwargs(guidance: dict | None, transformer_config) -> dict[str, Any]:
    guidance = dict(guidance or {})
    unknown = set(guidance) - GUIDANCE_KEYS
    if unknown:
        raise ValueError(f"unknown guidance keys {sorted(unknown)}; allowed: {sorted(GUIDANCE_KEYS)}")
    g = {k: guidance.get(k, GUIDANCE_OFF[k]) for k in ("cfg", "stg", "stg_blocks", "rescale", "modality")}
    # Audio settings default to the video ones (as the pipelines do for None).
    for key in ("cfg", "stg", "rescale", "modality"):
        g[f"audio_{key}"] = guidance.get(f"audio_{key}", g[key])

    kwargs: dict[str, Any] = {}
    for key, name in _GUIDANCE_KWARGS.items():
        value = float(g[key])
        kwargs[name] = _Zero(0.0) if key.startswith("audio_") and value == 0.0 else value

    blocks = [int(b) for b in (g["stg_blocks"] or [])]
    num_layers = transformer_config.num_layers
    stg_on = g["stg"] > 0 or g["audio_stg"] > 0
    if stg_on and not blocks:
        raise ValueError("STG is on (stg or audio_stg > 0) but no stg_blocks were given")
    if stg_on and not transformer_config.get("perturbed_attn", False):
        # Without the perturbed-attention processor the STG pass equals the normal pass:
        # STG would cost a transformer pass per step and change nothing.
        raise ValueError(
            "STG needs a transformer with config perturbed_attn=True (it has no weights; load with "
            "LTX2VideoTransformer3DModel.from_pretrained(..., perturbed_attn=True)), or set stg and audio_stg to 0"
        )
    bad = [b for b in blocks if not 0 <= b < num_layers]
    if bad:
        raise ValueError(f"stg_blocks {bad} out of range for a transformer with {num_layers} blocks")
    kwargs["spatio_temporal_guidance_blocks"] = blocks
    return kwargs


def _uses_cfg(kwargs: dict[str, Any]) -> bool:
    return kwargs["guidance_scale"] > 1.0 or kwargs["audio_guidance_scale"] > 1.0


def _components(pipe, cls, **overrides) -> dict[str, Any]:
    expected, _ = cls._get_signature_keys(cls)
    parts = {name: module for name, module in pipe.components.items() if name in expected}
    parts.update(overrides)
    return parts


def _pipeline_for(pipe, *, conditioned: bool, use_dynamic_shifting: bool | None, in_context: bool = False):
    """The pipeline object to sample with.

    Conditions need ``LTX2ConditionPipeline``, IC-LoRA reference videos ``LTX2InContextPipeline``. Either is built from ``pipe``'s
    components with its constructor rather than ``from_pipe``: ``from_pipe`` ends
    with ``.to(dtype=float32)`` on the *shared* modules (its dtype argument
    defaults to float32), which would silently up-cast a bf16/fp8 pipeline in
    place. Either way the modules (and the scheduler object) are shared, not
    copied.
    """
    from diffusers import LTX2ConditionPipeline, LTX2InContextPipeline

    overrides: dict[str, Any] = {}
    scheduler = pipe.scheduler
    config = scheduler.config
    if use_dynamic_shifting is not None and (
        bool(config.get("use_dynamic_shifting")) != use_dynamic_shifting
        or (not use_dynamic_shifting and config.get("shift_terminal"))
    ):
        changes: dict[str, Any] = {"use_dynamic_shifting": use_dynamic_shifting}
        if not use_dynamic_shifting:
            changes["shift_terminal"] = None  # the distilled scheduler: sigmas are used as given
        overrides["scheduler"] = type(scheduler).from_config(config, **changes)

    if in_context:
        return LTX2InContextPipeline(**_components(pipe, LTX2InContextPipeline, **overrides))
    if conditioned:
        if isinstance(pipe, LTX2ConditionPipeline) and not overrides:
            return pipe
        return LTX2ConditionPipeline(**_components(pipe, LTX2ConditionPipeline, **overrides))
    if not overrides:
        return pipe
    return type(pipe)(**_components(pipe, type(pipe), **overrides))


def _check_latents(latents: dict, *, num_frames: int, height: int, width: int, pipe) -> None:
    video, audio = latents.get("video"), latents.get("audio")
    if video is None or audio is None:
        raise ValueError("latents must hold both 'video' and 'audio' tensors")
    if video.ndim != 5 or audio.ndim != 4:
        raise ValueError(
            f"expected video [B,C,F,H,W] and audio [B,C,L,M], got {tuple(video.shape)} and {tuple(audio.shape)}"
        )
    s = pipe.vae_spatial_compression_ratio
    t = pipe.vae_temporal_compression_ratio
    want = ((num_frames - 1) // t + 1, height // s, width // s)
    if tuple(video.shape[2:]) != want:
        raise ValueError(
            f"video latents {tuple(video.shape)} do not match {num_frames} frames at {width}x{height}"
            f" (expected latent F,H,W = {want})"
        )


def sample_latents(
    pipe,
    embeds: dict[str, torch.Tensor],
    *,
    width: int,
    height: int,
    num_frames: int,
    frame_rate: float,
    seed: int,
    sigmas: Sequence[float] | None = None,
    num_inference_steps: int | None = None,
    guidance: dict[str, Any] | None = None,
    conditions: Sequence[tuple[np.ndarray, int, float]] = (),
    latents: dict[str, torch.Tensor] | None = None,
    noise_scale: float | None = None,
    on_step: Callable[[int, int], None] | None = None,
    use_dynamic_shifting: bool | None = None,
    use_cross_timestep: bool = True,
    image_crf: int | None = None,
    references: Sequence[tuple[np.ndarray, float]] = (),
    reference_downscale_factor: int = 1,
) -> dict[str, torch.Tensor]:
    """Denoise video + audio latents; no VAE decode.

    Args:
        pipe: a loaded ``LTX2Pipeline`` (or ``LTX2ConditionPipeline``).
        embeds: output of :func:`encode_prompt`. Must include the negative
            embeddings when CFG is on.
        width, height: output size in pixels (multiples of 32). When refining
            ``latents``, the size those latents decode to.
        num_frames: pixel frames, ``8k + 1``.
        frame_rate: fps; sets the RoPE time base and the audio length.
        seed: seeds a CPU ``torch.Generator`` (so noise is the same on any device).
        sigmas / num_inference_steps: the schedule. With ``sigmas`` the steps
            are ``len(sigmas)`` (a final 0 is appended by the scheduler); else
            ``linspace(1, 1/n, n)``. Either way the scheduler may shift them
            (dev config: token-count dynamic shift + terminal stretch).
        guidance: keys from :data:`GUIDANCE_KEYS`: ``cfg``, ``stg``,
            ``stg_blocks``, ``rescale``, ``modality`` and ``audio_cfg``,
            ``audio_stg``, ``audio_rescale``, ``audio_modality``. Missing video
            keys are "off" (:data:`GUIDANCE_OFF`), missing audio keys copy the
            video value (an explicit audio 0 stays 0). ``None`` = all off.
            STG needs ``transformer.config.perturbed_attn`` (else ValueError:
            it would silently do nothing).
        conditions: ``(frames, pixel_frame_index, strength)`` items. ``frames``
            is uint8 ``(N, H, W, 3)`` (or ``(H, W, 3)``), resized and centre
            cropped to ``width x height``. A multi-frame condition at index 0 is
            clip continuation: its latents replace the first latent frames. Index
            ``p > 0`` becomes latent index ``(p - 1) // 8 + 1`` (appended keyframe
            tokens placed at pixel ``keyframe_pixel_position(p)``). Multi-frame
            conditions are trimmed to ``8k + 1`` frames that fit in the clip.
            With conditions, ``LTX2ConditionPipeline`` is used.
        latents: ``{"video": [B,C,F,H,W], "audio": [B,C,L,M]}`` to refine
            (stage 2), as returned by this function (video possibly upsampled).
        noise_scale: how much fresh noise to mix into ``latents``
            (``x = s * noise + (1 - s) * x``, in normalised latent space);
            required with ``latents``, not allowed without (then sampling
            starts from pure noise).
        on_step: called as ``on_step(steps_done, total_steps)`` after each step.
        use_dynamic_shifting: ``False`` samples with a copy of the scheduler
            without dynamic shift or terminal stretch (the distilled schedule,
            needed to use ``STAGE_2_DISTILLED_SIGMA_VALUES`` as given with a dev
            checkpoint); ``None`` uses ``pipe.scheduler`` as it is. The
            config of ``pipe.scheduler`` is never changed.
        use_cross_timestep: passed to the pipeline. ``True`` (pipeline default)
            is LTX-2.3/2.5 behaviour; LTX-2.0 was trained with ``False``.
        image_crf: H.264 CRF applied to single-image conditions (None = model
            default, 33 for LTX-2.0/2.3; 0 = none).
        references: IC-LoRA control videos ``(frames, strength)``: uint8
            ``(N, H, W, 3)`` frames, encoded at ``width x height`` divided by
            ``reference_downscale_factor`` and appended as extra tokens
            (``strength`` 1: seen as clean), as ``LTX2InContextPipeline`` does;
            the IC-LoRA itself must be active on the transformer.

    Returns:
        ``{"video": [B, C, F_lat, H/32, W/32], "audio": [B, C_audio, L, M]}``,
        float32, de-normalised, on the pipeline's execution device. Feed them
        back as ``latents=`` (after upsampling the video) or to :func:`decode`.
    """
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    if (num_frames - 1) % _TEMPORAL_RATIO != 0 or num_frames < 1:
        raise ValueError(f"num_frames must be 8k+1, got {num_frames}")
    if sigmas is None and num_inference_steps is None:
        raise ValueError("give sigmas or num_inference_steps")
    if latents is not None and noise_scale is None:
        raise ValueError("noise_scale is required when refining latents")
    if latents is None and noise_scale is not None:
        raise ValueError("noise_scale only applies when refining latents")

    kwargs = _guidance_kwargs(guidance, pipe.transformer.config)
    if _uses_cfg(kwargs) and "negative_prompt_embeds" not in embeds:
        raise ValueError("CFG is on but embeds have no negative prompt; call encode_prompt with a negative_prompt")

    device = pipe._execution_device
    prompt_kwargs = {k: v.to(device) for k, v in embeds.items()}

    cond_objects = []
    for i, item in enumerate(conditions):
        frames, pixel_index, strength = item
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
            raise ValueError(
                f"condition {i}: frames must be uint8 (N,H,W,3) or (H,W,3), got {frames.dtype} {frames.shape}"
            )
        if not 0 <= pixel_index < num_frames:
            raise ValueError(f"condition {i}: pixel frame {pixel_index} outside a {num_frames}-frame clip")
        cond_objects.append(
            LTX2VideoCondition(
                frames=frames,
                index=latent_index_for_pixel_frame(pixel_index, pipe.vae_temporal_compression_ratio),
                strength=float(strength),
                crf=image_crf,
            )
        )

    if latents is not None:
        _check_latents(latents, num_frames=num_frames, height=height, width=width, pipe=pipe)
        kwargs["latents"] = latents["video"].to(device=device, dtype=torch.float32)
        kwargs["audio_latents"] = latents["audio"].to(device=device, dtype=torch.float32)
    if noise_scale is not None:
        kwargs["noise_scale"] = float(noise_scale)

    runner = _pipeline_for(
        pipe, conditioned=bool(cond_objects), use_dynamic_shifting=use_dynamic_shifting, in_context=bool(references)
    )
    if runner is not pipe and hasattr(pipe, "_progress_bar_config"):
        runner.set_progress_bar_config(**pipe._progress_bar_config)
    if cond_objects:
        kwargs["conditions"] = cond_objects
    if references:
        from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

        kwargs["reference_conditions"] = [
            LTX2ReferenceCondition(frames=np.asarray(frames), strength=float(strength))
            for frames, strength in references
        ]
        kwargs["reference_downscale_factor"] = int(reference_downscale_factor)

    if on_step is not None:

        def _callback(p, step, timestep, tensors):
            on_step(step + 1, p.num_timesteps)
            return {}

        kwargs["callback_on_step_end"] = _callback

    video, audio = runner(
        **prompt_kwargs,
        **kwargs,
        width=width,
        height=height,
        num_frames=num_frames,
        frame_rate=frame_rate,
        sigmas=list(sigmas) if sigmas is not None else None,
        num_inference_steps=num_inference_steps if sigmas is None else len(sigmas),
        generator=torch.Generator(device="cpu").manual_seed(int(seed)),
        use_cross_timestep=use_cross_timestep,
        output_type="latent",
        return_dict=False,
    )
    return {"video": video, "audio": audio}


@torch.no_grad()
def upsample_latents(
    upsample_pipe,
    video_latents: torch.Tensor,
) -> torch.Tensor:
    """Spatially upsample video latents with ``LTX2LatentUpsamplePipeline`` (x2, or
    x1.5 with the rational upscaler).

    ``video_latents``: de-normalised ``[B, C, F, H, W]`` (as :func:`sample_latents`
    returns them). Returns de-normalised ``[B, C, F, sH, sW]`` float32 (``s`` the
    upsampler's scale), ready to be refined with
    ``sample_latents(..., latents={"video": up, "audio": audio})`` at ``s`` times
    the width and height. Audio latents are not touched.
    """
    device = upsample_pipe._execution_device
    (out,) = upsample_pipe(
        latents=video_latents.to(device=device, dtype=torch.float32),
        latents_normalized=False,
        output_type="latent",
        return_dict=False,
    )
    return out.float()


@torch.no_grad()
def decode(
    pipe,
    latents: dict[str, torch.Tensor],
    *,
    decode_timestep: float = 0.0,
    decode_noise_scale: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode latents to frames and audio, as the end of ``__call__`` does.

    ``latents``: ``{"video": [1, C, F_lat, h, w], "audio": [1, C_audio, L, M]}``,
    de-normalised (as :func:`sample_latents` returns them). No sampling is run.

    Video: VAE decode, then ``(x / 2 + 0.5).clamp(0, 1) * 255`` rounded. Only if
    the VAE is timestep-conditioned (not the case for LTX-2.0's VAE) are
    ``decode_timestep`` / ``decode_noise_scale`` / ``seed`` used: the normalised
    latents are mixed with ``decode_noise_scale`` (default: ``decode_timestep``)
    of seeded noise and decoded at ``decode_timestep``.
    Audio: audio VAE decode to a mel spectrogram ``[1, 2, 4L - 3, mel_bins]``,
    then the vocoder.

    Returns ``(frames, audio, sample_rate)``: frames uint8 ``(F, H, W, 3)`` with
    ``F = 8 * (F_lat - 1) + 1``, ``H = 32 h``, ``W = 32 w``; audio float32
    ``(channels, samples)`` in [-1, 1]; ``sample_rate`` the vocoder's output
    rate (24000 for LTX-2.0).
    """
    video, audio = latents["video"], latents["audio"]
    if video.shape[0] != 1 or audio.shape[0] != 1:
        raise ValueError("decode handles one clip (batch size 1)")
    device = pipe._execution_device
    vae = pipe.vae
    video = video.to(device=device, dtype=torch.float32)

    timestep = None
    if vae.config.timestep_conditioning or vae.dtype != torch.float32:
        # As the pipeline decodes: from normalised latents cast to the model dtype first, de-normalised in
        # that dtype (a bf16 pipeline rounds before de-normalising; doing the same keeps the frames identical).
        stats = (vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        normalized = pipe._normalize_latents(video, *stats)
        if vae.config.timestep_conditioning:
            noise = torch.randn(
                normalized.shape, generator=torch.Generator(device="cpu").manual_seed(int(seed)), dtype=normalized.dtype
            ).to(device)
            scale = decode_timestep if decode_noise_scale is None else decode_noise_scale
            normalized = (1 - scale) * normalized + scale * noise
            timestep = torch.tensor([decode_timestep], device=device, dtype=vae.dtype)
        video = pipe._denormalize_latents(normalized.to(vae.dtype), *stats)

    pixels = vae.decode(video.to(vae.dtype), timestep, return_dict=False)[0]
    # postprocess_video(output_type="pt") keeps the work on the device (in the VAE's dtype, as the pipeline's
    # "np" output does); only uint8 frames cross to the CPU
    frames = pipe.video_processor.postprocess_video(pixels, output_type="pt")[0]  # (F, 3, H, W) in [0, 1]
    frames = (frames.float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    audio_vae = pipe.audio_vae
    mel = audio_vae.decode(audio.to(device=device, dtype=audio_vae.dtype), return_dict=False)[0]
    waveform = pipe.vocoder(mel.to(pipe.vocoder.dtype))
    samples = waveform[0].float().cpu().numpy()
    return frames, samples, int(pipe.vocoder.config.output_sampling_rate)
