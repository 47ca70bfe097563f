"""LTX-2.3 (22B) profiles on the CPU with tiny random weights in the 2.3 architecture."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from scenekit.ltx2 import recipe
from scenekit.ltx2.tiny import TINY_MAX_SEQUENCE_LENGTH, TINY_STG_BLOCKS, build_tiny_lora
from scenekit.tiny import build_tiny_weights

from conftest import Project, read_video


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_weights("ltx23-distilled", root / "ltx23-distilled", seed=3)  # `python -m scenekit.tiny`
    build_tiny_weights("ltx2-distilled", root / "ltx2-distilled", seed=3)
    return root


def test_tiny_ltx23_weights_have_the_23_architecture_in_the_published_format(models: Path):
    folder = models / "ltx23-distilled"
    config = json.loads((folder / "transformer" / "config.json").read_text())
    assert config["gated_attn"] and config["cross_attn_mod"] and not config["use_prompt_embeddings"]
    assert json.loads((folder / "connectors" / "config.json").read_text())["per_modality_projections"]
    with safe_open(str(folder / "ltx-2.3-22b-distilled-1.1.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
        assert handle.metadata()["model_version"] == "2.3.0"
    assert "model.diffusion_model.prompt_adaln_single.linear.weight" in keys  # Lightricks' names
    assert "model.diffusion_model.transformer_blocks.0.attn1.to_gate_logits.weight" in keys
    assert "text_embedding_projection.video_aggregate_embed.weight" in keys
    assert not any("caption_projection" in key for key in keys)


def test_20_and_23_clips_with_loras_and_an_ic_lora_render_together_sharing_no_cache_entry(
    project: Project, models: Path, monkeypatch
):
    from scenekit.ltx2 import pool
    from scenekit.media.video import write_frames

    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    folder = models / "ltx23-distilled"
    (project.root / "loras").mkdir()
    build_tiny_lora(folder, project.root / "loras" / "style.safetensors", seed=21)
    build_tiny_lora(folder, project.root / "loras" / "camera.safetensors", seed=22, diffusers_format=True)
    build_tiny_lora(folder, project.root / "loras" / "ic-pose.safetensors", seed=23, reference_downscale_factor=2)
    pose = np.random.default_rng(5).integers(0, 256, (12, 256, 256, 3), dtype=np.uint8)
    (project.root / "assets").mkdir()
    write_frames(project.root / "assets" / "dancer.mkv", pose, Fraction(24))
    project.write("""
        scenekit: 1
        defaults: {size: 256x256, fps: 24, seed: 2}
        clips:
          - {id: old, model: ltx2-distilled, prompt: "a lighthouse", frames: 9}
          - id: new
            model: ltx23-distilled
            prompt: "a lighthouse"
            frames: 9
            loras: [{file: loras/style.safetensors, weight: 0.7}, {file: loras/camera.safetensors, stages: [1]}]
          - id: dance
            model: ltx23-distilled
            prompt: "a dancer"
            frames: 9
            control: {lora: loras/ic-pose.safetensors, video: assets/dancer.mkv, strength: 0.9}
        output: {file: out.mp4, preset: ultrafast}
    """)
    graph = project.prepare().graph
    assert graph.node("new/stage1").params["use_cross_timestep"] is True
    assert graph.node("old/stage1").params["use_cross_timestep"] is False
    keys = {clip: {n.key for n in graph.ordered() if n.clip == clip} for clip in ("old", "new")}
    assert len(keys["new"]) == 6 and not keys["old"] & keys["new"]
    dance = graph.node("dance/stage1")
    assert dance.params["control"] == {"file": "control", "frames": 9, "strength": 0.9, "downscale": 2}
    assert dance.files["lora0"].written == "loras/ic-pose.safetensors" and "control" in dance.files
    assert "control" not in graph.node("dance/stage2").params and "loras" not in graph.node("dance/stage2").params
    pool.POOL.clear()
    frames, _, _ = read_video(project.render().output)
    assert frames.shape == (27, 256, 256, 3)
    loaded = pool.MODELS.loaded("transformer")
    assert sorted(bool(m.config.gated_attn) for m in loaded) == [False, True]  # a 2.0 and a 2.3 transformer
    pool.POOL.clear()
    project.write(project.spec.read_text().replace("strength: 0.9", "strength: 0.5"))
    runs = project.planned_runs()
    assert runs["dance/stage1"] == "clips[2].control changed" and "dance/prompt" not in runs


def test_the_split_recipe_equals_the_direct_diffusers_call_on_ltx23(models: Path):
    """With guidance (CFG, STG, modality) and a first-frame image, so that the cross timestep matters."""
    from diffusers import LTX2ConditionPipeline, LTX2Pipeline
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    pipe = LTX2Pipeline.from_pretrained(models / "ltx23-distilled", local_files_only=True)
    direct = LTX2ConditionPipeline(**pipe.components)
    direct.set_progress_bar_config(disable=True)
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    settings = dict(width=64, height=64, num_frames=9, frame_rate=24.0, num_inference_steps=2)
    guidance = {"cfg": 3.0, "stg": 1.0, "stg_blocks": TINY_STG_BLOCKS, "rescale": 0.7, "modality": 3.0}
    video, audio = direct(
        conditions=[LTX2VideoCondition(frames=image, index=0, crf=0)],
        prompt="a red ball",
        negative_prompt="blur",
        **settings,
        guidance_scale=3.0,
        stg_scale=1.0,
        spatio_temporal_guidance_blocks=TINY_STG_BLOCKS,
        guidance_rescale=0.7,
        modality_scale=3.0,
        audio_guidance_scale=3.0,
        audio_stg_scale=1.0,
        audio_guidance_rescale=0.7,
        audio_modality_scale=3.0,
        use_cross_timestep=True,
        max_sequence_length=TINY_MAX_SEQUENCE_LENGTH,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
        return_dict=False,
    )
    embeds = recipe.encode_prompt(pipe, "a red ball", "blur", max_sequence_length=TINY_MAX_SEQUENCE_LENGTH)
    embeds = recipe.expand_embeds(recipe.compact_embeds(embeds))  # as cached: without padding tokens
    latents = recipe.sample_latents(
        pipe, embeds, **settings, seed=7, guidance=guidance, conditions=[(image, 0, 1.0)], image_crf=0
    )
    frames, samples, _ = recipe.decode(pipe, latents, seed=7)
    assert np.array_equal(frames, (video[0] * 255).round().astype(np.uint8))
    assert np.abs(samples - audio[0].numpy()).max() == 0.0


def test_ic_lora_control_frames_equal_the_direct_in_context_call(models: Path):
    from diffusers import LTX2InContextPipeline, LTX2Pipeline
    from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

    pipe = LTX2Pipeline.from_pretrained(models / "ltx23-distilled", local_files_only=True)
    expected, _ = LTX2InContextPipeline._get_signature_keys(LTX2InContextPipeline)
    direct = LTX2InContextPipeline(**{k: v for k, v in pipe.components.items() if k in expected})
    direct.set_progress_bar_config(disable=True)
    control = np.random.default_rng(4).integers(0, 256, (9, 96, 80, 3), dtype=np.uint8)
    settings = dict(width=64, height=64, num_frames=9, frame_rate=24.0, num_inference_steps=2)
    video, audio = direct(
        prompt="a dancer",
        reference_conditions=[LTX2ReferenceCondition(frames=control, strength=0.9)],
        reference_downscale_factor=2,
        **settings,
        guidance_scale=1.0,
        stg_scale=0.0,
        spatio_temporal_guidance_blocks=[],
        guidance_rescale=0.0,
        modality_scale=1.0,
        audio_guidance_scale=1.0,
        audio_stg_scale=0.0,
        audio_guidance_rescale=0.0,
        audio_modality_scale=1.0,
        max_sequence_length=TINY_MAX_SEQUENCE_LENGTH,
        generator=torch.Generator().manual_seed(3),
        output_type="np",
        return_dict=False,
    )
    embeds = recipe.encode_prompt(pipe, "a dancer", None, max_sequence_length=TINY_MAX_SEQUENCE_LENGTH)
    latents = recipe.sample_latents(
        pipe, embeds, **settings, seed=3, references=[(control, 0.9)], reference_downscale_factor=2
    )
    frames, samples, _ = recipe.decode(pipe, latents, seed=3)
    assert np.array_equal(frames, (video[0] * 255).round().astype(np.uint8))
    assert np.abs(samples - audio[0].numpy()).max() == 0.0
