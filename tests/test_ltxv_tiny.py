"""The LTX-Video recipe split into nodes equals diffusers' own calls bit for bit, on tiny weights loaded from
single files in Lightricks' published format (transformer + VAE with their configs in the metadata)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from scenekit.ltxv import recipe
from scenekit.ltxv.pool import ModelPool
from scenekit.ltxv.tiny import TINY_MAX_SEQUENCE_LENGTH, build_tiny_profile_weights
from scenekit.runtime.speed import Numerics

PROFILE = "ltxv-2b-0.9.8-distilled"
CHECKPOINT = "ltxv-2b-0.9.8-distilled.safetensors"
UPSCALER = "ltxv-spatial-upscaler-0.9.8.safetensors"
FIRST = [1.0, 0.9937, 0.9875, 0.9812, 0.975, 0.9094, 0.725]
SECOND = [0.9094, 0.725, 0.4219]
F32 = {"compute": "float32", "storage": "float32"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return build_tiny_profile_weights(tmp_path_factory.mktemp("ltxv") / PROFILE, seed=3, profile=PROFILE)


def test_split_recipe_equals_the_direct_diffusers_calls_bit_for_bit(folder: Path, monkeypatch):
    from diffusers import LTXConditionPipeline
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    pool = ModelPool()
    text = pool.text_pipeline(folder, "float32")
    pipe = pool.pipeline(folder, CHECKPOINT, F32, Numerics("float32", compiled=False))
    upsampler = pool.upsampler(folder, CHECKPOINT, UPSCALER, "float32")
    width, height, frames, seed = 128, 96, 17, 11
    w1, h1 = recipe.pass_size(width, height, 0.6666666)
    rng = np.random.default_rng(0)
    context = recipe.prepare_frames(rng.integers(0, 255, (9, 60, 90, 3), dtype=np.uint8), width, height, 29)
    key = recipe.prepare_frames(rng.integers(0, 255, (70, 70, 3), dtype=np.uint8), width, height, 29)
    conditions = [(context, 0, 1.0), (key, 13, 0.8)]  # a continuation at frame 0, a keyframe off the latent grid

    embeds = recipe.encode_prompt(text, "A lighthouse", None, max_sequence_length=TINY_MAX_SEQUENCE_LENGTH)
    common = {"num_frames": frames, "frame_rate": 24.0, "seed": seed, "guidance": {}, "conditions": conditions}
    first = recipe.sample_pass(pipe, embeds, width=w1, height=h1, timesteps=FIRST, **common)
    upsampled = recipe.upsample(upsampler, first["latents"], 1.0)
    second = recipe.sample_pass(
        pipe, embeds, width=2 * w1, height=2 * h1, timesteps=SECOND, latents=upsampled, **common
    )
    decode = functools.partial(
        recipe.decode, pipe, timestep=0.05, noise_scale=0.025, width=width, height=height, dtype=torch.float32
    )
    split = decode(second["latents"], second["rng"])

    direct = LTXConditionPipeline(
        scheduler=pipe.scheduler,
        vae=pipe.vae,
        transformer=pipe.transformer,
        text_encoder=text.text_encoder,
        tokenizer=text.tokenizer,
    )
    direct.set_progress_bar_config(disable=True)
    items = [
        LTXVideoCondition(video=context, frame_index=0, strength=1.0),
        LTXVideoCondition(image=key[0], frame_index=13, strength=0.8),
    ]
    call = {
        "conditions": items,
        "prompt": "A lighthouse",
        "num_frames": frames,
        "frame_rate": 24.0,
        "guidance_scale": 1.0,
        "max_sequence_length": TINY_MAX_SEQUENCE_LENGTH,
    }
    latents = direct(
        **call,
        width=w1,
        height=h1,
        timesteps=[t * 1000 for t in FIRST],
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
    ).frames
    assert torch.equal(latents, first["latents"])
    latents = upsampler(latents=latents, adain_factor=1.0, output_type="latent").frames
    video = direct(
        **call,
        width=2 * w1,
        height=2 * h1,
        timesteps=[1000.0] + [t * 1000 for t in SECOND],
        denoise_strength=0.8,
        latents=latents,
        decode_timestep=0.05,
        decode_noise_scale=0.025,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).frames[0]
    expected = recipe.to_frames(video, width, height)
    assert split.shape == (frames, height, width, 3)
    assert np.array_equal(split, expected)
    toned = decode(recipe.tone_map(second["latents"], 0.6), second["rng"])
    assert not np.array_equal(split, toned)  # the 13B profile's tone map changes the frames


def test_checkpoint_files_in_the_published_format_load_with_fp8_scales_folded(tmp_path: Path):
    from safetensors.torch import load_file, save_file

    from scenekit.ltxv.checkpoint import load_transformer_file, load_vae_file
    from scenekit.ltxv.tiny import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path, "ltxv-13b-0.9.8-distilled-fp8.safetensors", seed=2, storage="float8_e4m3fn")
    published = load_file(str(path))
    key = "model.diffusion_model.transformer_blocks.0.attn1.to_q"
    assert published[f"{key}.weight"].dtype == torch.float8_e4m3fn
    assert any(k.startswith("vae.decoder.up_blocks.") for k in published)  # Lightricks' VAE names
    transformer = load_transformer_file(path, torch.float32, "cpu")
    expected = published[f"{key}.weight"].float() * published[f"{key}.weight_scale"].float()
    assert torch.equal(transformer.transformer_blocks[0].attn1.to_q.weight, expected)
    vae = load_vae_file(path, torch.float32, "cpu")
    assert torch.equal(vae.latents_mean, published["vae.per_channel_statistics.mean-of-means"])
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == (32, 8)

    save_file({k: v for k, v in published.items() if k.startswith("vae.")}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ValueError, match="no `config` in its metadata"):
        load_vae_file(tmp_path / "bare.safetensors", torch.float32, "cpu")


def test_a_guidance_schedule_maps_timesteps_as_lightricks_pipeline_does():
    bounds = [1.0, 0.996, 0.9933, 0.985, 0.9767, 0.9008, 0.618]  # the dev config's guidance_timesteps
    at = (1.0, 0.998, 0.995, 0.9933, 0.99, 0.98, 0.95, 0.7, 0.1)
    # the first entry whose bound is <= the timestep, the last one below every bound
    assert [recipe._at(list(range(7)), t, bounds) for t in at] == [0, 1, 2, 2, 3, 4, 5, 6, 6]
    steps = recipe.schedule(None, 30, skip_final=3)
    assert len(steps) == 27 and steps[0] == 1.0 and len(recipe.schedule(None, 30, skip_initial=17)) == 13


def test_stg_moves_the_conditional_prediction_away_from_the_perturbed_one(folder: Path):
    from scenekit.ltxv.checkpoint import load_transformer_file
    from scenekit.ltxv.guidance import GuidanceState, guided_steps
    from scenekit.ltxv.stg import perturbed_blocks

    transformer = load_transformer_file(folder / CHECKPOINT, torch.float32, "cpu")
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "hidden_states": torch.randn(2, 8, 8, generator=generator),
        "encoder_hidden_states": torch.randn(2, 4, 32, generator=generator),
        "timestep": torch.tensor([[500.0], [500.0]]),
        "encoder_attention_mask": torch.ones(2, 4),
        "num_frames": 2,
        "height": 2,
        "width": 2,
        "return_dict": False,
    }
    with torch.no_grad():
        plain = transformer(**inputs)[0]
        conditional = {k: v[1:] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        with perturbed_blocks(transformer, [1]):
            perturbed = transformer(**conditional)[0][0]
        with guided_steps(transformer, GuidanceState(cfg=4.0, stg=2.0, blocks=[1], batched=True)):
            guided = transformer(**inputs)[0]
        assert torch.equal(transformer(**inputs)[0], plain)  # the hooks are gone
        alone = transformer(**conditional)[0][0]
    assert (perturbed - alone).abs().max() > 1e-3  # the perturbation changes the prediction
    uncond, text = plain[0], plain[1]
    expected = uncond + 4.0 * (text - uncond) + 2.0 * (text - perturbed)
    assert torch.equal(guided[0], expected) and torch.equal(guided[1], expected)  # the pipeline's CFG keeps it


def _float32_pipe_and_embeds(folder: Path, monkeypatch) -> tuple[Any, dict[str, torch.Tensor]]:
    """The tiny pipeline in float32 on the CPU, and a prompt's embeddings with a negative prompt."""
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    pool = ModelPool()
    text = pool.text_pipeline(folder, "float32")
    pipe = pool.pipeline(folder, CHECKPOINT, F32, Numerics("float32", compiled=False))
    return pipe, recipe.encode_prompt(text, "A lighthouse", "blur", max_sequence_length=TINY_MAX_SEQUENCE_LENGTH)


def test_a_pass_follows_cfg_stg_rescale_and_cfg_star_schedules(folder: Path, monkeypatch):
    from scenekit.ltxv import guidance as combining
    from scenekit.ltxv import stg

    pipe, embeds = _float32_pipe_and_embeds(folder, monkeypatch)
    steps, perturbed = [], []
    original_combine, original_perturbed = combining.combine, stg.perturbed_blocks

    def combine(*args, **kwargs):
        steps.append(tuple(kwargs.values()))
        return original_combine(*args, **kwargs)

    monkeypatch.setattr(combining, "combine", combine)
    monkeypatch.setattr(
        stg, "perturbed_blocks", lambda module, blocks: perturbed.append(blocks) or original_perturbed(module, blocks)
    )
    guidance = {
        "cfg": [1, 4, 1],
        "rescale": [0, 0.7, 0],
        "stg": [0, 2, 1],
        "stg_blocks": [[], [1], [0]],
        "timesteps": [1.0, 0.95, 0.6],
        "cfg_star_rescale": True,
    }
    common = {"width": 64, "height": 64, "num_frames": 9, "frame_rate": 24.0, "seed": 1}
    on = recipe.sample_pass(pipe, embeds, guidance=guidance, timesteps=[1.0, 0.97, 0.9, 0.5], **common)["latents"]
    # (cfg, stg, rescale, cfg-star) per step: 0.97 in [0.95, 1), 0.9 in [0.6, 0.95), 0.5 below the last bound
    assert steps == [(1, 0.0, 0, True), (4, 2, 0.7, True), (1, 1, 0, True), (1, 1, 0, True)]
    assert perturbed == [[1], [0], [0]]  # no STG in the first interval, then the blocks of each
    off = recipe.sample_pass(
        pipe, embeds, guidance={**guidance, "cfg_star_rescale": False}, timesteps=[1.0, 0.97], **common
    )
    assert torch.isfinite(on).all() and torch.isfinite(off["latents"]).all()
    again = recipe.sample_pass(pipe, embeds, guidance=guidance, timesteps=[1.0, 0.97], **common)["latents"]
    assert not torch.equal(again, off["latents"])  # CFG-star moves the guided step


def test_a_step_with_cfg_off_computes_only_the_text_half_of_the_batch(folder: Path, monkeypatch):
    from scenekit.ltxv import guidance as combining

    pipe, embeds = _float32_pipe_and_embeds(folder, monkeypatch)
    rows: list[int] = []
    first_block = pipe.transformer.transformer_blocks[0]
    handle = first_block.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    guidance = {"cfg": [1, 4, 1], "stg": [0, 0, 1], "stg_blocks": [0], "timesteps": [1.0, 0.95, 0.6]}
    common = {"width": 64, "height": 64, "num_frames": 9, "frame_rate": 24.0, "seed": 1}
    timesteps = [1.0, 0.97, 0.9, 0.5]
    try:
        lean = recipe.sample_pass(pipe, embeds, guidance=guidance, timesteps=timesteps, **common)["latents"]
        assert rows == [1, 2, 1, 1, 1, 1]  # CFG on at 0.97 only; STG's perturbed pass (batch 1) at 0.9 and 0.5
        rows.clear()
        monkeypatch.setattr(combining, "unconditional_unused", lambda state: False)
        full = recipe.sample_pass(pipe, embeds, guidance=guidance, timesteps=timesteps, **common)["latents"]
    finally:
        handle.remove()
    assert rows == [2, 2, 2, 1, 2, 1]
    torch.testing.assert_close(lean, full, rtol=1e-5, atol=1e-5)  # the unconditional half was unused
    assert "forward" not in vars(pipe.transformer)  # the model is left as it was


def test_cfg_star_rescale_scales_uncond_by_its_projection_per_sample_before_cfg_stg_and_rescale():
    from scenekit.ltxv.guidance import cfg_star, combine

    # two samples of 2 tokens x 2 channels
    text = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]])
    uncond = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]]])
    # sample 0: <t,u> = 1 + 3 = 4, |u|^2 = 2 -> alpha 2; sample 1: <t,u> = 2, |u|^2 = 4 -> alpha 0.5
    scaled = cfg_star(text, uncond)
    torch.testing.assert_close(scaled, torch.tensor([[[2.0, 0.0], [2.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]]))
    assert torch.equal(cfg_star(text, torch.zeros_like(uncond)), torch.zeros_like(uncond))  # epsilon: no 0/0

    perturbed = text - 1.0
    guided = combine(text, uncond, perturbed, cfg=3.0, stg=2.0, rescale=0.5, cfg_star_rescale=True)
    # sample 0 by hand: 2u + 3 (t - 2u) = [-1, 6, 5, 12]; + 2 (t - p) = [1, 8, 7, 14]; std [1,2,3,4] / std that
    by_hand = torch.tensor([1.0, 8.0, 7.0, 14.0])
    factor = 0.5 * (5 / 3) ** 0.5 / (85 / 3) ** 0.5 + 0.5
    torch.testing.assert_close(guided[0].flatten(), by_hand * factor)
    plain = combine(text, uncond, perturbed, cfg=3.0, stg=2.0, rescale=1.0, cfg_star_rescale=False)
    torch.testing.assert_close(plain[0].flatten(), torch.tensor([1.0, 6.0, 7.0, 12.0]) + 2.0)  # rescale 1: none
    unguided = combine(text, uncond, None, cfg=1.0, stg=0.0, rescale=0.5, cfg_star_rescale=True)
    assert torch.equal(unguided, text)  # without CFG there is nothing to rescale; without STG no std rescale


def test_step_caching_skips_the_later_blocks_of_steps_that_barely_move_and_goes_with_its_pass(
    folder: Path, monkeypatch
):
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    pool = ModelPool()
    text = pool.text_pipeline(folder, "float32")
    pipe = pool.pipeline(folder, CHECKPOINT, F32, Numerics("float32", compiled=False))
    embeds = recipe.encode_prompt(text, "A lighthouse", None, max_sequence_length=TINY_MAX_SEQUENCE_LENGTH)
    calls: list[int] = []
    hook = pipe.transformer.transformer_blocks[1].ff.register_forward_hook(lambda *args: calls.append(1))  # in full
    common = {"width": 64, "height": 64, "num_frames": 9, "frame_rate": 24.0, "seed": 1, "guidance": {}}
    common["timesteps"] = [1.0, 0.99, 0.98, 0.97, 0.5]

    def run(threshold: float | None) -> tuple[torch.Tensor, int]:
        calls.clear()
        latents = recipe.sample_pass(pipe, embeds, step_cache=threshold, **common)["latents"]
        return latents, len(calls)

    full, computed = run(None)
    cached, computed_cached = run(1e9)  # every step after the first reuses the cached residual
    assert computed == 5 and computed_cached == 1 and not torch.equal(cached, full)
    again, _ = run(None)
    assert torch.equal(again, full)  # the cache went with its pass: the shared transformer is as it was
    stg = {"stg": 1.0, "stg_blocks": [1]}  # the first block is not perturbed: its residual matches the main pass's
    guided = recipe.sample_pass(pipe, embeds, step_cache=1e9, **{**common, "guidance": stg})["latents"]
    assert not torch.equal(guided, cached)  # the perturbed pass has its own cache context, so STG still acts
    hook.remove()
