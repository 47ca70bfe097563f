"""The LTX-2 recipe (scenekit.ltx2.recipe) on tiny random weights (scenekit.ltx2.tiny).

The tiny pipeline is written to disk once per session and loaded back with
``from_pretrained(..., local_files_only=True)``, the same code path as real
weights. Shapes follow LTX-2's real compression (32x space, 8x time; 25 audio
latents per second; 24 kHz stereo out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    FlowMatchEulerDiscreteScheduler,
    LTX2ConditionPipeline,
    LTX2LatentUpsamplePipeline,
    LTX2Pipeline,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel  # noqa: E402
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition  # noqa: E402
from diffusers.pipelines.ltx2.utils import STAGE_2_DISTILLED_SIGMA_VALUES  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from scenekit.ltx2 import recipe  # noqa: E402
from scenekit.ltx2.tiny import (  # noqa: E402
    TINY_MAX_SEQUENCE_LENGTH,
    TINY_STG_BLOCKS,
    build_tiny_latent_upsampler,
    build_tiny_ltx2,
)

from conftest import NO_GUIDANCE_KWARGS  # noqa: E402

MSL = TINY_MAX_SEQUENCE_LENGTH
PROMPT = "a red ball bounces on a wooden floor"
NEGATIVE = "blurry, distorted"
FULL_GUIDANCE = dict(
    cfg=3.0,
    stg=1.0,
    stg_blocks=TINY_STG_BLOCKS,
    rescale=0.7,
    modality=3.0,
    audio_cfg=7.0,
    audio_stg=1.0,
    audio_rescale=0.7,
    audio_modality=3.0,
)
# The same settings as LTX2Pipeline.__call__ keywords, for direct calls.
FULL_GUIDANCE_KWARGS = dict(
    guidance_scale=3.0,
    stg_scale=1.0,
    spatio_temporal_guidance_blocks=TINY_STG_BLOCKS,
    guidance_rescale=0.7,
    modality_scale=3.0,
    audio_guidance_scale=7.0,
    audio_stg_scale=1.0,
    audio_guidance_rescale=0.7,
    audio_modality_scale=3.0,
)


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ltx2_tiny")
    return build_tiny_ltx2(root / "ltx2", seed=0), build_tiny_latent_upsampler(root / "upsampler", seed=0)


def _load(folder: Path, **kwargs) -> LTX2Pipeline:
    pipe = LTX2Pipeline.from_pretrained(folder, local_files_only=True, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe(tiny_dirs) -> LTX2Pipeline:
    """Shared, loaded pipeline. Tests must not modify it (load their own to do so)."""
    return _load(tiny_dirs[0])


@pytest.fixture(scope="module")
def upsample_pipe(tiny_dirs) -> LTX2LatentUpsamplePipeline:
    up = LTX2LatentUpsamplePipeline.from_pretrained(tiny_dirs[1], local_files_only=True)
    up.set_progress_bar_config(disable=True)
    return up


@pytest.fixture(scope="module")
def embeds(pipe) -> dict:
    return recipe.encode_prompt(pipe, PROMPT, NEGATIVE, device=None, max_sequence_length=MSL)


@pytest.fixture(scope="module")
def embeds_positive(pipe) -> dict:
    return recipe.encode_prompt(pipe, PROMPT, None, max_sequence_length=MSL)


def _image(seed: int, size=(64, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _clip(seed: int, frames: int = 9, size=(64, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, *size, 3), dtype=np.uint8)


def _raw_latents(pipe, frames: np.ndarray) -> torch.Tensor:
    """VAE latents (raw, de-normalised space) of uint8 frames (N,H,W,3) already at the target size."""
    pixels = torch.from_numpy(frames).float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0
    with torch.no_grad():
        return pipe.vae.encode(pixels).latent_dist.mode()


def _to_uint8(video: np.ndarray) -> np.ndarray:
    return (video * 255).round().astype(np.uint8)


# --- the tiny checkpoint -----------------------------------------------------------------------------


def test_tiny_checkpoint_has_real_repo_layout(tiny_dirs):
    folder, up_folder = tiny_dirs
    assert (folder / "model_index.json").is_file()
    for sub in ("scheduler", "tokenizer", "text_encoder", "connectors", "transformer", "vae", "audio_vae", "vocoder"):
        assert (folder / sub).is_dir(), sub
    assert (folder / "tokenizer" / "tokenizer.json").is_file()
    assert (up_folder / "model_index.json").is_file()
    assert (up_folder / "latent_upsampler" / "config.json").is_file()
    model = LTX2LatentUpsamplerModel.from_pretrained(up_folder, subfolder="latent_upsampler", local_files_only=True)
    assert model.config.in_channels == 8


def test_tiny_pipeline_loads_with_real_settings(pipe):
    assert pipe.vae_spatial_compression_ratio == 32
    assert pipe.vae_temporal_compression_ratio == 8
    assert pipe.transformer.config.num_layers >= 2
    assert pipe.scheduler.config.use_dynamic_shifting and pipe.scheduler.config.shift_terminal == 0.1
    assert pipe.vocoder.config.output_sampling_rate == 24000
    ids = pipe.tokenizer(PROMPT).input_ids
    assert len(set(ids)) > 5 and pipe.tokenizer.unk_token_id not in ids


def test_tiny_build_is_deterministic(tmp_path):
    def weights(folder: Path) -> dict[str, torch.Tensor]:
        out = {}
        for f in sorted(folder.rglob("*.safetensors")):
            for key, value in load_file(f).items():
                out[f"{f.parent.name}/{key}"] = value
        return out

    a = weights(build_tiny_ltx2(tmp_path / "a", seed=0))
    b = weights(build_tiny_ltx2(tmp_path / "b", seed=0))
    c = weights(build_tiny_ltx2(tmp_path / "c", seed=1))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())
    assert any(not torch.equal(a[k], c[k]) for k in a)


# --- (a) one stage, text to video with CFG + STG ------------------------------------------------------


def test_encode_prompt_shapes(embeds, embeds_positive):
    assert set(embeds) == {
        "prompt_embeds",
        "prompt_attention_mask",
        "negative_prompt_embeds",
        "negative_prompt_attention_mask",
    }
    assert embeds["prompt_embeds"].shape == (1, MSL, 32 * 3)  # hidden 32 x (2 layers + embeddings)
    assert embeds["prompt_attention_mask"].shape == (1, MSL)
    assert embeds["negative_prompt_embeds"].shape == embeds["prompt_embeds"].shape
    assert set(embeds_positive) == {"prompt_embeds", "prompt_attention_mask"}


def test_one_stage_text_to_video(pipe, embeds):
    steps = []
    lat = recipe.sample_latents(
        pipe,
        embeds,
        width=64,
        height=64,
        num_frames=9,
        frame_rate=24.0,
        seed=1,
        num_inference_steps=3,
        guidance=FULL_GUIDANCE,
        on_step=lambda done, total: steps.append((done, total)),
    )
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert lat["video"].shape == (1, 8, 2, 2, 2)  # [B, C, (9-1)/8+1, 64/32, 64/32]
    assert lat["audio"].shape == (1, 2, 9, 4)  # [B, C, round(9/24*25), 16 mel / 4]
    frames, audio, rate = recipe.decode(pipe, lat, decode_timestep=0.0, decode_noise_scale=None, seed=1)
    assert frames.shape == (9, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 1  # not a constant image
    assert rate == 24000
    assert audio.dtype == np.float32 and audio.shape == (2, (4 * 9 - 3) * 240)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    again = recipe.sample_latents(
        pipe,
        embeds,
        width=64,
        height=64,
        num_frames=9,
        frame_rate=24.0,
        seed=1,
        num_inference_steps=3,
        guidance=FULL_GUIDANCE,
    )
    assert torch.equal(again["video"], lat["video"]) and torch.equal(again["audio"], lat["audio"])


def test_guidance_is_checked(pipe, embeds, embeds_positive):
    common = dict(width=64, height=64, num_frames=9, frame_rate=24.0, seed=0, num_inference_steps=2)
    with pytest.raises(ValueError, match="negative"):
        recipe.sample_latents(pipe, embeds_positive, guidance={"cfg": 3.0}, **common)
    with pytest.raises(ValueError, match="stg_blocks"):
        recipe.sample_latents(pipe, embeds, guidance={"stg": 1.0}, **common)
    with pytest.raises(ValueError, match="out of range"):
        recipe.sample_latents(pipe, embeds, guidance={"stg": 1.0, "stg_blocks": [2]}, **common)
    with pytest.raises(ValueError, match="unknown guidance"):
        recipe.sample_latents(pipe, embeds, guidance={"cfg_scale": 3.0}, **common)
    with pytest.raises(ValueError, match="8k\\+1"):
        recipe.sample_latents(pipe, embeds, **{**common, "num_frames": 10})


def test_explicit_zero_audio_stg_is_kept(pipe, embeds):
    """The pipeline resolves `audio_stg_scale or stg_scale`; an explicit audio 0 must stay 0."""
    common = dict(width=64, height=64, num_frames=9, frame_rate=24.0, seed=2, num_inference_steps=2)
    video_only_stg = recipe.sample_latents(
        pipe, embeds, guidance={"stg": 1.0, "stg_blocks": [1], "audio_stg": 0.0}, **common
    )
    both_stg = recipe.sample_latents(pipe, embeds, guidance={"stg": 1.0, "stg_blocks": [1]}, **common)
    no_stg = recipe.sample_latents(pipe, embeds, guidance=None, **common)
    assert not torch.equal(video_only_stg["audio"], both_stg["audio"])
    assert not torch.equal(video_only_stg["video"], no_stg["video"])
    # Calling the pipeline with a plain audio_stg_scale=0.0 silently uses the video value instead.
    naive = pipe(
        **embeds,
        width=64,
        height=64,
        num_frames=9,
        frame_rate=24.0,
        num_inference_steps=2,
        **{**NO_GUIDANCE_KWARGS, "stg_scale": 1.0, "spatio_temporal_guidance_blocks": [1]},
        generator=torch.Generator().manual_seed(2),
        output_type="latent",
        return_dict=False,
    )
    assert torch.equal(naive[1], both_stg["audio"])


def test_stg_needs_the_perturbed_attention_processor(tiny_dirs, embeds):
    """diffusers' LTX-2.0 conversion has perturbed_attn=False: STG would be a silent no-op."""
    folder = tiny_dirs[0]
    transformer = LTX2VideoTransformer3DModel.from_pretrained(
        folder, subfolder="transformer", perturbed_attn=False, local_files_only=True
    )
    plain = LTX2Pipeline.from_pretrained(folder, transformer=transformer, local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    common = dict(width=64, height=64, num_frames=9, frame_rate=24.0, seed=2, num_inference_steps=2)
    with pytest.raises(ValueError, match="perturbed_attn"):
        recipe.sample_latents(plain, embeds, guidance={"stg": 1.0, "stg_blocks": [1]}, **common)
    # No STG: the processor choice makes no difference.
    ref = recipe.sample_latents(_load(folder), embeds, guidance={"cfg": 3.0}, **common)
    assert torch.equal(recipe.sample_latents(plain, embeds, guidance={"cfg": 3.0}, **common)["video"], ref["video"])


# --- (e) splitting into steps == one direct pipeline call ---------------------------------------------


def test_split_steps_equal_direct_call(pipe, embeds):
    settings = dict(width=64, height=64, num_frames=9, frame_rate=24.0, num_inference_steps=3)
    video, audio = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        **settings,
        **FULL_GUIDANCE_KWARGS,
        max_sequence_length=MSL,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
        return_dict=False,
    )
    lat = recipe.sample_latents(pipe, embeds, **settings, seed=7, guidance=FULL_GUIDANCE)
    frames, samples, _ = recipe.decode(pipe, lat, seed=7)
    assert np.array_equal(frames, _to_uint8(video[0]))
    assert np.abs(samples - audio[0].numpy()).max() == 0.0


def test_split_steps_equal_direct_call_in_bfloat16(tiny_dirs):
    """A bf16 pipeline rounds latents and pixels in bf16 before de-normalising them; decode does the same."""
    bf16 = _load(tiny_dirs[0], dtype=torch.bfloat16)
    settings = dict(width=64, height=64, num_frames=9, frame_rate=24.0, num_inference_steps=3)
    video, audio = bf16(
        prompt=PROMPT,
        **settings,
        **NO_GUIDANCE_KWARGS,
        max_sequence_length=MSL,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
        return_dict=False,
    )
    embeds = recipe.encode_prompt(bf16, PROMPT, None, max_sequence_length=MSL)
    frames, samples, _ = recipe.decode(bf16, recipe.sample_latents(bf16, embeds, **settings, seed=7), seed=7)
    assert np.array_equal(frames, _to_uint8(video[0]))
    assert np.array_equal(samples, audio[0].float().numpy())


def test_embeddings_without_padding_give_the_same_video(pipe):
    """scenekit caches embeddings without their padding positions; the padding values never reach the model."""
    embeds = recipe.encode_prompt(pipe, "a ball", "blurry", max_sequence_length=2 * MSL)
    compact = recipe.compact_embeds(embeds)
    mask = embeds["prompt_attention_mask"].bool()
    assert compact["prompt_embeds"].shape == (int(mask.sum()), embeds["prompt_embeds"].shape[-1])
    assert int(mask.sum()) < mask.shape[1]
    restored = recipe.expand_embeds(compact)
    assert restored.keys() == embeds.keys()
    noisy = dict(embeds)  # whatever the padding positions hold (real Gemma leaves values there), nothing changes
    for name, mask_name in (
        ("prompt_embeds", "prompt_attention_mask"),
        ("negative_prompt_embeds", "negative_prompt_attention_mask"),
    ):
        padded = ~embeds[mask_name].bool()
        noisy[name] = embeds[name].clone()
        noisy[name][padded] = torch.randn(noisy[name][padded].shape, generator=torch.Generator().manual_seed(1))
    settings = dict(
        width=64, height=64, num_frames=9, frame_rate=24.0, num_inference_steps=2, seed=7, guidance=FULL_GUIDANCE
    )
    full = recipe.sample_latents(pipe, noisy, **settings)
    again = recipe.sample_latents(pipe, restored, **settings)
    assert torch.equal(full["video"], again["video"]) and torch.equal(full["audio"], again["audio"])


def test_split_steps_equal_direct_call_with_conditions(pipe, embeds):
    image, clip = _image(3), _clip(4)
    settings = dict(width=64, height=64, num_frames=17, frame_rate=24.0, num_inference_steps=2)
    cond_pipe = LTX2ConditionPipeline(**pipe.components)
    cond_pipe.set_progress_bar_config(disable=True)
    video, audio = cond_pipe(
        conditions=[LTX2VideoCondition(frames=clip, index=0), LTX2VideoCondition(frames=image, index=2, strength=0.8)],
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        **settings,
        **FULL_GUIDANCE_KWARGS,
        max_sequence_length=MSL,
        generator=torch.Generator().manual_seed(5),
        output_type="np",
        return_dict=False,
    )
    lat = recipe.sample_latents(
        pipe, embeds, **settings, seed=5, guidance=FULL_GUIDANCE, conditions=[(clip, 0, 1.0), (image, 9, 0.8)]
    )
    frames, samples, _ = recipe.decode(pipe, lat, seed=5)
    assert np.array_equal(frames, _to_uint8(video[0]))
    assert np.abs(samples - audio[0].numpy()).max() == 0.0


# --- (b) image conditions -------------------------------------------------------------------------------


def test_pixel_to_latent_index():
    assert [recipe.latent_index_for_pixel_frame(p) for p in (0, 1, 8, 9, 16, 17, 24, 120)] == [0, 1, 1, 2, 2, 3, 3, 15]
    assert [recipe.keyframe_pixel_position(p) for p in (0, 1, 8, 9, 16, 17, 120)] == [0, 1, 1, 9, 9, 17, 113]
    with pytest.raises(ValueError):
        recipe.latent_index_for_pixel_frame(-1)


def test_image_condition_at_first_frame(pipe, embeds):
    image = _image(11)
    common = dict(
        width=64, height=64, num_frames=17, frame_rate=24.0, seed=3, num_inference_steps=2, guidance=FULL_GUIDANCE
    )
    lat = recipe.sample_latents(pipe, embeds, conditions=[(image, 0, 1.0)], image_crf=0, **common)
    assert lat["video"].shape == (1, 8, 3, 2, 2)
    # A strength-1 first-frame condition stays clean: latent frame 0 is the image's VAE latent.
    torch.testing.assert_close(lat["video"][:, :, :1], _raw_latents(pipe, image[None]), atol=1e-5, rtol=0)
    # Default CRF (33): the image is H.264 re-compressed first, so the latent differs slightly.
    lat_crf = recipe.sample_latents(pipe, embeds, conditions=[(image, 0, 1.0)], **common)
    assert not torch.equal(lat_crf["video"][:, :, :1], lat["video"][:, :, :1])
    frames, _, _ = recipe.decode(pipe, lat, seed=3)
    assert frames.shape == (17, 64, 64, 3)


def test_image_condition_at_later_frame(pipe, embeds):
    image = _image(12, size=(48, 80))  # any size: resized and centre-cropped to 64x64
    common = dict(
        width=64, height=64, num_frames=17, frame_rate=24.0, seed=3, num_inference_steps=2, guidance=FULL_GUIDANCE
    )
    plain = recipe.sample_latents(pipe, embeds, **common)
    at_9 = recipe.sample_latents(pipe, embeds, conditions=[(image, 9, 1.0)], **common)
    at_16 = recipe.sample_latents(pipe, embeds, conditions=[(image, 16, 1.0)], **common)
    at_1 = recipe.sample_latents(pipe, embeds, conditions=[(image, 1, 1.0)], **common)
    assert at_9["video"].shape == plain["video"].shape == (1, 8, 3, 2, 2)  # keyframe tokens are dropped again
    assert not torch.equal(at_9["video"], plain["video"])
    assert torch.equal(at_16["video"], at_9["video"])  # pixel 16 -> latent 2 -> placed at pixel 9
    assert not torch.equal(at_1["video"], at_9["video"])
    with pytest.raises(ValueError, match="outside"):
        recipe.sample_latents(pipe, embeds, conditions=[(image, 17, 1.0)], **common)
    # A multi-frame keyframe at a later index (trimmed to the frames that fit: 9 from pixel 9 of 17).
    clip = recipe.sample_latents(pipe, embeds, conditions=[(_clip(13, frames=12), 9, 0.9)], **common)
    assert clip["video"].shape == (1, 8, 3, 2, 2) and not torch.equal(clip["video"], at_9["video"])


# --- (c) continuation -----------------------------------------------------------------------------------


def test_continuation_from_previous_clip(pipe, embeds):
    lat_prev = recipe.sample_latents(
        pipe,
        embeds,
        width=64,
        height=64,
        num_frames=17,
        frame_rate=24.0,
        seed=8,
        num_inference_steps=2,
        guidance=FULL_GUIDANCE,
    )
    previous, _, _ = recipe.decode(pipe, lat_prev, seed=8)
    tail = previous[-9:]
    lat = recipe.sample_latents(
        pipe,
        embeds,
        width=64,
        height=64,
        num_frames=25,
        frame_rate=24.0,
        seed=9,
        num_inference_steps=2,
        guidance=FULL_GUIDANCE,
        conditions=[(tail, 0, 1.0)],
    )
    assert lat["video"].shape == (1, 8, 4, 2, 2)
    assert lat["audio"].shape == (1, 2, 26, 4)  # round(25 / 24 * 25)
    # The 9 conditioning frames occupy latent frames 0-1 and are kept exactly.
    torch.testing.assert_close(lat["video"][:, :, :2], _raw_latents(pipe, tail), atol=1e-5, rtol=0)
    frames, audio, _ = recipe.decode(pipe, lat, seed=9)
    assert frames.shape == (25, 64, 64, 3)
    assert audio.shape == (2, (4 * 26 - 3) * 240)


# --- (d) two stages ---------------------------------------------------------------------------------------


def test_two_stage_distilled_refine(pipe, upsample_pipe, embeds, embeds_positive):
    stage1 = recipe.sample_latents(
        pipe,
        embeds,
        width=32,
        height=32,
        num_frames=9,
        frame_rate=24.0,
        seed=4,
        num_inference_steps=3,
        guidance=FULL_GUIDANCE,
    )
    assert stage1["video"].shape == (1, 8, 2, 1, 1)
    up = recipe.upsample_latents(upsample_pipe, stage1["video"])
    assert up.shape == (1, 8, 2, 2, 2)
    sigmas = STAGE_2_DISTILLED_SIGMA_VALUES
    steps = []
    stage2 = recipe.sample_latents(
        pipe,
        embeds_positive,
        width=64,
        height=64,
        num_frames=9,
        frame_rate=24.0,
        seed=4,
        sigmas=sigmas,
        latents={"video": up, "audio": stage1["audio"]},
        noise_scale=sigmas[0],
        guidance=None,
        use_dynamic_shifting=False,
        on_step=lambda done, total: steps.append(done),
    )
    assert steps == [1, 2, 3]
    assert stage2["video"].shape == (1, 8, 2, 2, 2) and stage2["audio"].shape == stage1["audio"].shape
    assert pipe.scheduler.config.use_dynamic_shifting  # the shared scheduler was not touched
    frames, audio, _ = recipe.decode(pipe, stage2, seed=4)
    assert frames.shape == (9, 64, 64, 3) and audio.shape == (2, 33 * 240)

    # Same as calling the pipelines directly, with the distilled scheduler swapped in.
    direct_stage1 = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        width=32,
        height=32,
        num_frames=9,
        frame_rate=24.0,
        num_inference_steps=3,
        **FULL_GUIDANCE_KWARGS,
        max_sequence_length=MSL,
        generator=torch.Generator().manual_seed(4),
        output_type="latent",
        return_dict=False,
    )
    direct_up = upsample_pipe(latents=direct_stage1[0], output_type="latent", return_dict=False)[0]
    distilled = FlowMatchEulerDiscreteScheduler.from_config(
        pipe.scheduler.config, use_dynamic_shifting=False, shift_terminal=None
    )
    stage2_pipe = LTX2Pipeline(**{**pipe.components, "scheduler": distilled})
    stage2_pipe.set_progress_bar_config(disable=True)
    video, direct_audio = stage2_pipe(
        prompt=PROMPT,
        width=64,
        height=64,
        num_frames=9,
        frame_rate=24.0,
        sigmas=sigmas,
        noise_scale=sigmas[0],
        latents=direct_up,
        audio_latents=direct_stage1[1],
        **NO_GUIDANCE_KWARGS,
        max_sequence_length=MSL,
        generator=torch.Generator().manual_seed(4),
        output_type="np",
        return_dict=False,
    )
    assert np.array_equal(frames, _to_uint8(video[0]))
    np.testing.assert_allclose(audio, direct_audio[0].numpy(), atol=1e-6, rtol=0)


def test_two_stage_refine_with_image_condition(pipe, upsample_pipe, embeds, embeds_positive):
    image = _image(21)
    stage1 = recipe.sample_latents(
        pipe,
        embeds,
        width=32,
        height=32,
        num_frames=9,
        frame_rate=24.0,
        seed=6,
        num_inference_steps=2,
        guidance=FULL_GUIDANCE,
        conditions=[(image, 0, 1.0)],
        image_crf=0,
    )
    up = recipe.upsample_latents(upsample_pipe, stage1["video"])
    sigmas = STAGE_2_DISTILLED_SIGMA_VALUES
    stage2 = recipe.sample_latents(
        pipe,
        embeds_positive,
        width=64,
        height=64,
        num_frames=9,
        frame_rate=24.0,
        seed=6,
        sigmas=sigmas,
        latents={"video": up, "audio": stage1["audio"]},
        noise_scale=sigmas[0],
        use_dynamic_shifting=False,
        conditions=[(image, 0, 1.0)],
        image_crf=0,
    )
    torch.testing.assert_close(stage2["video"][:, :, :1], _raw_latents(pipe, image[None]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="do not match"):
        recipe.sample_latents(
            pipe,
            embeds_positive,
            width=32,
            height=32,
            num_frames=9,
            frame_rate=24.0,
            seed=6,
            sigmas=sigmas,
            latents={"video": up, "audio": stage1["audio"]},
            noise_scale=sigmas[0],
        )
    with pytest.raises(ValueError, match="noise_scale"):
        recipe.sample_latents(
            pipe,
            embeds_positive,
            width=64,
            height=64,
            num_frames=9,
            frame_rate=24.0,
            seed=6,
            sigmas=sigmas,
            latents={"video": up, "audio": stage1["audio"]},
        )


def test_upsampler_with_the_main_pipelines_vae(pipe, tiny_dirs, upsample_pipe):
    """Real use: load only the upsampler model and share the already loaded VAE."""
    model = LTX2LatentUpsamplerModel.from_pretrained(tiny_dirs[1], subfolder="latent_upsampler", local_files_only=True)
    shared = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=model)
    latents = torch.randn(1, 8, 2, 1, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(recipe.upsample_latents(shared, latents), recipe.upsample_latents(upsample_pipe, latents))


# --- decode details -------------------------------------------------------------------------------------


def test_decode_with_timestep_conditioned_vae(tmp_path, embeds):
    pipe = _load(build_tiny_ltx2(tmp_path / "tc", seed=0, vae_timestep_conditioning=True))
    lat = recipe.sample_latents(
        pipe, embeds, width=64, height=64, num_frames=9, frame_rate=24.0, seed=1, num_inference_steps=2
    )
    a = recipe.decode(pipe, lat, decode_timestep=0.05, decode_noise_scale=0.025, seed=1)[0]
    b = recipe.decode(pipe, lat, decode_timestep=0.05, decode_noise_scale=0.025, seed=1)[0]
    c = recipe.decode(pipe, lat, decode_timestep=0.05, decode_noise_scale=0.025, seed=2)[0]
    assert a.shape == (9, 64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)


# --- (f) fp8 weight storage -----------------------------------------------------------------------------


def test_fp8_storage_float32_compute(tiny_dirs, embeds):
    pipe = _load(tiny_dirs[0])
    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    lat = recipe.sample_latents(
        pipe,
        embeds,
        width=64,
        height=64,
        num_frames=9,
        frame_rate=24.0,
        seed=1,
        num_inference_steps=2,
        guidance=FULL_GUIDANCE,
    )
    assert torch.float8_e4m3fn in {p.dtype for p in pipe.transformer.parameters()}
    assert torch.isfinite(lat["video"]).all() and torch.isfinite(lat["audio"]).all()
    frames, audio, _ = recipe.decode(pipe, lat, seed=1)
    assert frames.shape == (9, 64, 64, 3) and np.isfinite(audio).all()


def test_fp8_storage_bfloat16_pipeline_with_condition(tiny_dirs):
    pipe = _load(tiny_dirs[0], dtype=torch.bfloat16)
    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    embeds = recipe.encode_prompt(pipe, PROMPT, NEGATIVE, max_sequence_length=MSL)
    assert embeds["prompt_embeds"].dtype == torch.bfloat16
    lat = recipe.sample_latents(
        pipe,
        embeds,
        width=64,
        height=64,
        num_frames=9,
        frame_rate=24.0,
        seed=1,
        num_inference_steps=2,
        guidance=FULL_GUIDANCE,
        conditions=[(_image(5), 0, 1.0)],
    )
    # The condition pipeline shares the modules without re-casting them (from_pipe would up-cast to float32).
    assert pipe.vae.dtype == torch.bfloat16
    assert torch.float8_e4m3fn in {p.dtype for p in pipe.transformer.parameters()}
    assert torch.isfinite(lat["video"]).all()
    frames, audio, _ = recipe.decode(pipe, lat, seed=1)
    assert frames.shape == (9, 64, 64, 3) and np.isfinite(audio).all()
