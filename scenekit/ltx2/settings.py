"""The `ltx2:` section of an LTX-2 model profile, typed."""

from __future__ import annotations

from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scenekit.profiles import ModelProfile
from scenekit.weights import HubFiles, ProfileWeights, WeightsRef


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(_Strict):
    """Where the pipeline and its extra parts come from on the hub."""

    pipeline: WeightsRef
    transformer: WeightsRef | None = None
    upsampler: WeightsRef | None = None
    distilled_lora: WeightsRef | None = None

    @property
    def upsampler_ref(self) -> WeightsRef:
        """The latent upsampler: a single file (Lightricks' `...-spatial-upscaler-x1.5-1.0.safetensors`), else a
        diffusers folder (`latent_upsampler/` of the pipeline's repo unless the profile says otherwise)."""
        ref = self.upsampler or WeightsRef(repo=self.pipeline.repo, revision=self.pipeline.revision)
        return ref if ref.file else ref.model_copy(update={"subfolder": ref.subfolder or "latent_upsampler"})


class LoraPreset(_Strict):
    """A LoRA a spec names as `{preset: NAME}`: a file in a hub repo, its default weight and stages."""

    repo: str
    revision: str = "main"
    file: str
    weight: float = 1.0
    stages: list[int] | None = None


class Precision(_Strict):
    """Compute dtype, and the dtype transformer weights are stored in between uses."""

    compute: str = "bfloat16"
    storage: str = "bfloat16"


class Stage(_Strict):
    """One sampling pass: at `scale` of the clip's size, with fixed `sigmas` or `steps`."""

    scale: float | str = 1.0
    """A number or a fraction (`2/3`: the stage before an x1.5 upsampler); exact, see `ratio`."""
    sigmas: list[float] | None = None
    steps: int | None = None
    guided: bool = False
    noise_scale: float = 0.0
    lora: str | None = None

    @field_validator("scale")
    @classmethod
    def _exact(cls, value: float | str) -> float | str:
        try:
            positive = Fraction(str(value)) > 0
        except (ValueError, ZeroDivisionError):
            positive = False
        if not positive:
            raise ValueError(f"a stage's scale is a positive number or fraction (`2/3`), not {value!r}")
        return value

    @property
    def ratio(self) -> Fraction:
        """The scale, exactly (`0.5` is 1/2, `2/3` is 2/3)."""
        return Fraction(str(self.scale))


class Guidance(_Strict):
    """Guidance of a guided stage (video and audio)."""

    cfg: float = 1.0
    stg: float = 0.0
    stg_blocks: list[int] = Field(default_factory=list)
    rescale: float = 0.0
    modality: float = 1.0
    audio_cfg: float = 1.0
    audio_stg: float = 0.0
    audio_rescale: float = 0.0
    audio_modality: float = 1.0


class Decode(_Strict):
    """VAE decode settings."""

    timestep: float = 0.0
    noise_scale: float | None = None


class Ltx2Settings(_Strict):
    """Everything an LTX-2 profile says about how to generate."""

    weights: Weights
    model_version: str = "2.0"
    """The LTX-2 release (`2.0`, `2.3`): the architecture of tiny weights; the real one is the folder's config."""
    precision: Precision = Field(default_factory=Precision)
    stages: list[Stage]
    guidance: Guidance = Field(default_factory=Guidance)
    decode: Decode = Field(default_factory=Decode)
    conditioning_crf: int = 33
    max_sequence_length: int = 1024
    use_cross_timestep: bool = False  # LTX-2.0 was trained without it; LTX-2.3+ with it
    speed: str = "auto"
    """The speed policy clips of this profile render with unless the render chooses (`scenekit.runtime.speed`)."""
    loras: dict[str, LoraPreset] = Field(default_factory=dict)
    """LoRA presets specs may name (the user config's win)."""
    lora_stages: list[int] | None = None
    """The stages a spec's LoRA applies to unless it says (None: every stage)."""

    def upsample_factor(self, number: int) -> Fraction | None:
        """How much the latents are upsampled before stage `number` (1-based): the ratio of its scale to the
        scale of the stage before, when larger; None when they are not."""
        if number < 2 or self.stages[number - 1].ratio <= self.stages[number - 2].ratio:
            return None
        return self.stages[number - 1].ratio / self.stages[number - 2].ratio

    def upsample_factors(self) -> set[Fraction]:
        """Every factor the latents are upsampled by between stages (the upsampler must do each)."""
        return {f for number in range(2, len(self.stages) + 1) if (f := self.upsample_factor(number)) is not None}

    def hub_files(self) -> list[str]:
        """The files and folders of the pipeline's hub repo a render needs (for `scenekit fetch`); the parts
        named in another repo are in `profile_weights`."""
        patterns = ["model_index.json"] + [
            f"{part}/*"
            for part in ("scheduler", "tokenizer", "text_encoder", "connectors", "vae", "audio_vae", "vocoder")
        ]
        transformer = self.weights.transformer
        patterns.append("transformer/config.json" if transformer and transformer.file else "transformer/*")
        return patterns + [_pattern(ref) for ref in self.parts() if ref.repo == self.weights.pipeline.repo]

    def parts(self) -> list[WeightsRef]:
        """The parts the profile names apart from the pipeline's folders (`scenekit.ltx2.parts`): its
        single-file transformer, latent upsampler and distilled LoRA."""
        weights = self.weights
        found = [weights.upsampler_ref]
        found += [ref for ref in (weights.transformer, weights.distilled_lora) if ref is not None and ref.file]
        return found


def _pattern(ref: WeightsRef) -> str:
    """The download pattern of a part: its file, else everything in its subfolder."""
    return ref.file or f"{ref.subfolder}/*"


def profile_weights(profile: ModelProfile) -> ProfileWeights:
    """What an LTX-2 profile downloads: the pipeline repo's files, then each other repo's parts."""
    settings = ltx2_settings(profile)
    pipeline = settings.weights.pipeline
    grouped: dict[tuple[str, str], list[str]] = {(pipeline.repo, pipeline.revision): settings.hub_files()}
    for ref in settings.parts():
        if ref.repo != pipeline.repo:
            grouped.setdefault((ref.repo, ref.revision), []).append(_pattern(ref))
    return ProfileWeights(pipeline, tuple(HubFiles(*where, tuple(found)) for where, found in grouped.items()))


def ltx2_settings(profile: ModelProfile) -> Ltx2Settings:
    """The typed `ltx2:` section of an LTX-2 profile."""
    sections = profile.model_extra
    assert sections is not None  # ModelProfile allows extra keys, so pydantic always keeps them here
    return Ltx2Settings.model_validate(sections["ltx2"])
