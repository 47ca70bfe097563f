"""The `ltx2:` section of an LTX-2 model profile, typed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
    def upsampler_folder(self) -> str:
        """The subfolder of the latent upsampler (`latent_upsampler` unless the profile says otherwise)."""
        return (self.upsampler.subfolder if self.upsampler is not None else None) or "latent_upsampler"


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

    scale: float = 1.0
    sigmas: list[float] | None = None
    steps: int | None = None
    guided: bool = False
    noise_scale: float = 0.0
    lora: str | None = None


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
        upsampler = weights.upsampler or WeightsRef(repo=weights.pipeline.repo, revision=weights.pipeline.revision)
        found = [upsampler.model_copy(update={"subfolder": weights.upsampler_folder})]
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
