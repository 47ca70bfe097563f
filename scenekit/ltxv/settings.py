"""The `ltxv:` section of an LTX-Video model profile, typed (the knobs of Lightricks' official YAML configs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scenekit.profiles import ModelProfile
from scenekit.weights import HubFiles, ProfileWeights, WeightsRef


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(_Strict):
    """The hub repo (diffusers folders: scheduler, tokenizer, T5 text encoder) and the single files the
    profile loads from it: the model checkpoint (transformer + VAE) and the spatial upscaler."""

    pipeline: WeightsRef
    checkpoint: WeightsRef
    upsampler: WeightsRef

    @model_validator(mode="after")
    def _files_named(self) -> Weights:
        if not self.checkpoint.file or not self.upsampler.file:
            raise ValueError("`checkpoint` and `upsampler` name a `file`")
        return self


class Precision(_Strict):
    """Compute dtype, and the dtype transformer weights are stored in between uses."""

    compute: str = "bfloat16"
    storage: str = "bfloat16"


class Guidance(_Strict):
    """Guidance of a pass: one value, or one per interval of `timesteps` (the dev config's schedules, where
    `timesteps[i]` is the smallest timestep the i-th value applies to: a step takes the first entry whose
    bound is at most its timestep, or the last). STG (`scenekit.ltxv.stg`) perturbs the self-attention of
    `stg_blocks` (one list, or one per interval). Combined as `scenekit.ltxv.guidance` says."""

    cfg: float | list[float] = 1.0
    rescale: float | list[float] = 0.0
    """The config's `rescaling_scale`: with STG on, the prediction's std moved this far towards the text
    prediction's (0 and 1 leave it as it is, as in Lightricks' pipeline)."""
    stg: float | list[float] = 0.0
    stg_blocks: list[int] | list[list[int]] = Field(default_factory=list)
    timesteps: list[float] | None = None
    cfg_star_rescale: bool = False
    """The config's `cfg_star_rescale`: with CFG on, the unconditional prediction is first scaled by
    <text, uncond> / ||uncond||^2 (per sample)."""

    @model_validator(mode="after")
    def _schedules_match(self) -> Guidance:
        scheduled = [self.cfg, self.rescale, self.stg]
        if self.stg_blocks and isinstance(self.stg_blocks[0], list):
            scheduled.append(self.stg_blocks)  # type: ignore[arg-type]  # a list per interval
        lists = [v for v in scheduled if isinstance(v, list)]
        if lists and (self.timesteps is None or any(len(v) != len(self.timesteps) for v in lists)):
            raise ValueError("a guidance schedule needs `timesteps` of the same length")
        if any(v > 0 for v in (self.stg if isinstance(self.stg, list) else [self.stg])) and not self.stg_blocks:
            raise ValueError("STG needs `stg_blocks`")
        return self


class Pass(_Strict):
    """One sampling pass: fixed `timesteps` (the distilled configs), or `steps` of diffusers' linear-quadratic
    schedule less `skip_initial`/`skip_final` steps (the dev configs)."""

    timesteps: list[float] | None = None
    steps: int | None = None
    skip_initial: int = 0
    skip_final: int = 0
    guidance: Guidance = Field(default_factory=Guidance)
    tone_map: float = 0.0
    """Latent tone-map compression before decoding (0.9.8's `tone_map_compression_ratio`; pass 2 only)."""
    step_cache: float | None = None
    """Threshold of diffusers' First Block Cache for this pass (None: every step in full)."""

    @model_validator(mode="after")
    def _one_schedule(self) -> Pass:
        if (self.timesteps is None) == (self.steps is None):
            raise ValueError("a pass has `timesteps` or `steps`")
        return self


class Decode(_Strict):
    """VAE decode settings (timestep-conditioned decoder)."""

    timestep: float = 0.05
    noise_scale: float = 0.025


class LtxvSettings(_Strict):
    """Everything an LTX-Video profile says about how to generate."""

    weights: Weights
    precision: Precision = Field(default_factory=Precision)
    downscale: float = 2 / 3
    """Pass 1 runs at this fraction of the target size (rounded down to multiples of 32), pass 2 at twice that."""
    first_pass: Pass
    second_pass: Pass
    adain: float = 1.0
    """AdaIN of the upsampled latents towards pass 1's (Lightricks' multi-scale pipeline: 1.0)."""
    image_cond_noise_scale: float = 0.15
    continuation_strength: float = 1.0
    """Strength of a continued clip's context frames (Lightricks' forward extension: 1.0, frozen)."""
    decode: Decode = Field(default_factory=Decode)
    negative_prompt: str = ""
    """The negative prompt of guided passes unless a clip sets its own."""
    conditioning_crf: int = 29
    max_sequence_length: int = 128
    speed: str = "auto"

    def hub_files(self) -> list[str]:
        """The files and folders of the hub repo a render needs (for `scenekit fetch`)."""
        parts = ["model_index.json", "scheduler/*", "tokenizer/*", "text_encoder/*"]
        return parts + [str(self.weights.checkpoint.file), str(self.weights.upsampler.file)]


def ltxv_settings(profile: ModelProfile) -> LtxvSettings:
    """The typed `ltxv:` section of an LTX-Video profile."""
    sections = profile.model_extra
    assert sections is not None  # ModelProfile allows extra keys, so pydantic always keeps them here
    return LtxvSettings.model_validate(sections["ltxv"])


def profile_weights(profile: ModelProfile) -> ProfileWeights:
    """What an LTX-Video profile downloads: its files of the pipeline repo (which holds the checkpoint and the
    upscaler too: the backend looks for them in the pipeline's folder)."""
    settings = ltxv_settings(profile)
    pipeline = settings.weights.pipeline
    return ProfileWeights(pipeline, (HubFiles(pipeline.repo, pipeline.revision, tuple(settings.hub_files())),))
