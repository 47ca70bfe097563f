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
from scenekit.ltx2.tiny import (
    TINY_MAX_SEQUENCE_LENGTH,
    TINY_STG_BLOCKS,
    build_tiny_lora,
    build_tiny_upsampler_file,
)
from scenekit.tiny import build_tiny_weights

from conftest import NO_GUIDANCE_KWARGS, Project, read_video


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    # `python -m scenekit.tiny`: what `ltx23-distilled` reads, and Lightricks' x1.5 upscaler file beside it
    build_tiny_weights("ltx23-distilled-x1.5", root / "ltx23-distilled-x1.5", seed=3)
    (root / "ltx23-distilled").symlink_to(root / "ltx23-distilled-x1.5")  # the same parts: keys can match
    build_tiny_weights("ltx2-distilled", root / "ltx2-distilled", seed=3)
    return root


X15_FILE = "ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors"


def test_tiny_ltx23_weights_have_the_23_architecture_in_the_published_format(models: Path):
    folder = models / "ltx23-distilled"
    config = json.loads((folder / "transformer" / "config.json").read_text())
    assert config["gated_attn"] and config["cross_attn_mod"] and not config["use_prompt_embeddings"]
    assert json.loads((folder / "connectors" / "config.json").read_text())["per_modality_projections"]
    vae, vocoder = (json.loads((folder / part / "config.json").read_text()) for part in ("vae", "vocoder"))
    assert vae["upsample_type"] == ["spatiotemporal", "spatiotemporal", "temporal", "spatial"]  # 2.3's decoder
    assert vocoder["_class_name"] == "LTX2VocoderWithBWE" and vocoder["output_sampling_rate"] == 48000
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
        **NO_GUIDANCE_KWARGS,
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


def test_x15_refine_renders_its_stage1_at_two_thirds_and_shares_it_with_an_x2_refine(
    project: Project, models: Path, monkeypatch
):
    """A 288x288 clip on `ltx23-distilled-x1.5` samples stage 1 at 192x192, as a 384x384 clip on x2 does: the
    same stage-1 entry; the upscaler is in the keys of the upsample node and what follows it only. Then the x1.5
    clip renders (its upscaler built from the file's metadata)."""
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    project.write("""
        scenekit: 1
        defaults: {fps: 24, seed: 2}
        clips:
          - {id: wide, model: ltx23-distilled-x1.5, size: 288x288, prompt: "a lighthouse", frames: 9}
          - {id: half, model: ltx23-distilled, size: 384x384, prompt: "a lighthouse", frames: 9}
        output: {file: out.mp4, preset: ultrafast, size: 288x288}
    """)
    graph = project.prepare().graph
    wide, half = ({n.id.split("/")[1]: n for n in graph.ordered() if n.clip == clip} for clip in ("wide", "half"))
    assert (wide["stage1"].params["width"], wide["stage2"].params["width"]) == (192, 288)
    assert wide["upsample"].params["factor"] == 1.5 and half["upsample"].params["factor"] == 2
    assert wide["upsample"].meta["upsampler"] == X15_FILE
    assert wide["prompt"].key == half["prompt"].key and wide["stage1"].key == half["stage1"].key
    assert wide["upsample"].key != half["upsample"].key
    project.write(project.spec.read_text().replace("- {id: half", "# - {id: half"))
    frames, _, _ = read_video(project.render().output)
    assert frames.shape == (9, 288, 288, 3)


def test_x15_sizes_that_cannot_work_and_a_mismatched_upscaler_are_errors(
    project: Project, models: Path, monkeypatch, tmp_path: Path
):
    from scenekit.backends.ltx2 import _upsampler_problem
    from scenekit.errors import SpecError
    from scenekit.ltx2.parts import Part
    from scenekit.ltx2.settings import ltx2_settings
    from scenekit.ltx2.upsampler import load_upsampler_file
    from scenekit.profiles import available_profiles

    monkeypatch.setenv("SCENEKIT_MODELS", str(models))
    project.write("scenekit: 1\nclips: [{id: a, model: ltx23-distilled-x1.5, size: 768x512, prompt: x, frames: 9}]\n")
    with pytest.raises(SpecError) as error:
        project.prepare()
    issue = error.value.issues[0]
    assert "not a multiple of 96" in issue.message and issue.location is not None and issue.location.line == 2
    model = load_upsampler_file(models / "ltx23-distilled" / X15_FILE)  # built from the file's metadata alone
    assert model(torch.zeros(1, 8, 2, 6, 4)).shape == (1, 8, 2, 9, 6)
    settings = ltx2_settings(available_profiles()["ltx23-distilled-x1.5"])
    x2 = build_tiny_upsampler_file(tmp_path, X15_FILE, 2.0)
    problem = _upsampler_problem("ltx23-distilled-x1.5", settings, Part(x2, "x2"))
    assert problem is not None and "upsamples x1.5 between its stages" in problem and "upsamples x2" in problem
