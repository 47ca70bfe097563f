"""pydantic models of the scene spec (v1): the single source of truth for validation and the JSON Schema."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)

from scenekit.units import Duration, parse_duration, parse_fps, parse_size

CLIP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"

DurationValue = Annotated[
    Duration,
    BeforeValidator(lambda value: value if isinstance(value, Duration) else parse_duration(value)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*(ms|s|m|f|frames?)?\s*$"},
            ],
            "description": "Seconds (2.5, '5s', '500ms', '1m') or frames ('12f').",
        }
    ),
]
FpsValue = Annotated[
    Fraction,
    BeforeValidator(lambda value: value if isinstance(value, Fraction) else parse_fps(value)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(/\d+)?$"},
            ],
            "description": "Frames per second: 24, 29.97 or '30000/1001'.",
        }
    ),
]
SizeValue = Annotated[
    tuple[int, int],
    BeforeValidator(lambda value: value if isinstance(value, tuple) else parse_size(value)),
    WithJsonSchema({"type": "string", "pattern": r"^\d+[xX]\d+$", "description": "WIDTHxHEIGHT, e.g. 768x512."}),
]


STEP_CACHE_RANGE = (0.0, 1.0)


def _step_cache_off(value: Any) -> Any:
    """`step_cache: off` (or `false`) is a threshold of 0: every step in full."""
    if value is True:
        raise ValueError("`step_cache` is a threshold, not `true`")
    return 0.0 if value is False or value == "off" else value


StepCacheValue = Annotated[
    float,
    BeforeValidator(_step_cache_off),
    Field(ge=STEP_CACHE_RANGE[0], le=STEP_CACHE_RANGE[1]),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": STEP_CACHE_RANGE[0], "maximum": STEP_CACHE_RANGE[1]},
                {"const": "off"},
                {"const": False},
            ],
            "description": "A threshold from 0 to 1 (e.g. 0.05), or 'off' (same as 0).",
        }
    ),
]


def _lookable_path(value: str) -> str:
    """A folder name or repo id the system can look up: no NUL byte, no name over 255 bytes (`NAME_MAX`)."""
    if "\0" in value:
        raise ValueError("the path contains a NUL character")
    if any(len(part.encode()) > 255 for part in value.split("/")):
        raise ValueError("a folder or file name in this path is longer than 255 bytes")
    return value


WeightsLocation = Annotated[str, AfterValidator(_lookable_path)]
FramePosition = Annotated[
    int | str,
    Field(
        description="Frame of this clip: an index (negative counts from the end) or a time such as '2s'.",
    ),
]


class SpecModel(BaseModel):
    """Base for every spec model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)


LORA_WEIGHT_RANGE = (-2.0, 2.0)


class LoraEntry(SpecModel):
    """A LoRA applied to a clip: a file, a file in a Hugging Face repo, or a preset named in the model profile
    or the user config."""

    file: str | None = Field(
        default=None, description="A .safetensors LoRA: relative to the spec's folder, or inside `repo`."
    )
    repo: Annotated[str, Field(pattern=r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")] | None = Field(
        default=None, description="Hugging Face repo holding `file`: 'org/name' or 'org/name@revision'."
    )
    preset: str | None = Field(
        default=None, description="A LoRA named in the model profile or the user config (`loras:`)."
    )
    weight: float | None = Field(
        default=None,
        ge=LORA_WEIGHT_RANGE[0],
        le=LORA_WEIGHT_RANGE[1],
        description="Strength (default 1.0, or the preset's); 0 switches off a LoRA from `defaults`.",
    )
    stages: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, min_length=1, description="Sampling stages it applies to (default: the profile's choice)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> LoraEntry:
        if (self.preset is None) == (self.file is None):
            raise ValueError("give `file` (with or without `repo`) or `preset`")
        if self.preset is not None and self.repo is not None:
            raise ValueError("a `preset` names its own file: remove `repo`")
        return self


class ClipSettings(SpecModel):
    """Settings a clip may take from `defaults` or set itself."""

    model: str | None = Field(default=None, description="Model profile name (`scenekit profiles` lists them).")
    size: SizeValue | None = Field(default=None, description="WIDTHxHEIGHT of the generated video.")
    fps: FpsValue | None = Field(default=None, description="Frames per second.")
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = Field(default=None, description="Random seed.")
    negative_prompt: str | None = Field(default=None, description="What to steer away from (guided profiles).")
    steps: int | None = Field(
        default=None, ge=1, le=200, description="Sampling steps of the first stage (profiles with a `steps` knob)."
    )
    guidance: float | None = Field(
        default=None, ge=1.0, le=20.0, description="Classifier-free guidance scale (profiles with a `guidance` knob)."
    )
    stg: float | None = Field(
        default=None, ge=0.0, le=10.0, description="Spatio-temporal guidance scale (profiles with an `stg` knob)."
    )
    drift_control: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="For continued clips: how strongly colours are pulled back to the chain's first clip (AdaIN of latents).",
    )
    step_cache: StepCacheValue | None = Field(
        default=None,
        description="Step caching of every sampling pass (profiles with a `step_cache` knob): a step whose first "
        "block changed less than this threshold reuses the other blocks' last result; 'off' or 0: every step in "
        "full. Overrides the profile's.",
    )
    loras: list[LoraEntry] | None = Field(
        default=None,
        description="LoRAs (profiles with a `loras` knob); a clip's add to those in `defaults`, the same file or "
        "preset replacing the default's entry.",
    )


class Conditioning(SpecModel):
    """An image, a video file or another clip's frames steering this clip."""

    image: str | None = Field(default=None, description="Image file, relative to the spec's folder.")
    video: str | None = Field(default=None, description="Video file, relative to the spec's folder.")
    clip: str | None = Field(default=None, description="Id of another clip whose last frames condition this one.")
    frame: FramePosition = 0
    strength: float = Field(default=1.0, ge=0.0, le=1.0, description="How strongly the source steers the clip.")
    frames: int | None = Field(
        default=None, ge=1, description="Frames taken: from the start of a video, or the last N of a clip (default 1)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Conditioning:
        given = [key for key in ("image", "video", "clip") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `image`, `video` or `clip`" + (f" (got {', '.join(given)})" if given else "")
            )
        if self.image is not None and self.frames is not None:
            raise ValueError("`frames` applies to `video` and `clip` sources, not to `image`")
        return self


class Transition(SpecModel):
    """How a clip enters: a cut, a crossfade, or a fade through black."""

    type: Literal["cut", "crossfade", "fade"] = "cut"
    duration: DurationValue | None = Field(
        default=None, description="Overlap of the two clips (default 0.5s; 0 for cut)."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value


class Control(SpecModel):
    """An IC-LoRA that makes a clip follow a control video (depth, pose, edges, ...)."""

    lora: str = Field(description="The IC-LoRA: a .safetensors file (relative to the spec's folder) or a preset.")
    video: str = Field(description="The control video, relative to the spec's folder.")
    strength: float = Field(
        default=1.0, ge=0.0, le=1.0, description="How clean the control frames look to the model (1: fully)."
    )
    weight: float | None = Field(
        default=None,
        ge=LORA_WEIGHT_RANGE[0],
        le=LORA_WEIGHT_RANGE[1],
        description="The IC-LoRA's strength (default 1.0, or the preset's).",
    )


class Clip(ClipSettings):
    """One shot of the scene."""

    id: str = Field(pattern=CLIP_ID_PATTERN, max_length=64, description="Unique id: lower-case, [a-z0-9_-].")
    prompt: str = Field(min_length=1, description="What the clip shows.")
    duration: DurationValue | None = Field(default=None, description="Length on the final timeline: '5s', 2.5, '120f'.")
    frames: int | None = Field(default=None, ge=1, description="Length on the final timeline in frames.")
    conditioning: list[Conditioning] = Field(
        default_factory=list, description="Images, video files or other clips' frames that steer this clip."
    )
    continue_: str | None = Field(
        default=None, alias="continue", description="Id of the clip whose motion this one continues."
    )
    overlap: int | None = Field(default=None, ge=1, description="Frames of the continued clip's tail used as context.")
    transition: Transition | None = Field(default=None, description="How this clip enters (default: cut).")
    control: Control | None = Field(
        default=None, description="Follow a control video through an IC-LoRA (profiles with the `loras` knob)."
    )

    @model_validator(mode="after")
    def _length(self) -> Clip:
        if (self.duration is None) == (self.frames is None):
            raise ValueError("give exactly one of `duration` or `frames`")
        if self.overlap is not None and self.continue_ is None:
            raise ValueError("`overlap` needs `continue`: it is the number of frames taken from the continued clip")
        return self


class ClipLoop(SpecModel):
    """Clips generated by a Jinja loop: `for: "shot in shots"` with a `clip` template."""

    for_: str = Field(alias="for", pattern=r"^\s*[A-Za-z_]\w*\s+in\s+.+$", description="'NAME in EXPRESSION'.")
    clip: dict[str, Any] = Field(description="A clip whose strings may use NAME and `loop`.")


def _clip_kind(value: Any) -> str:
    return "loop" if isinstance(value, dict) and "for" in value else "clip"


ClipEntry = Annotated[Annotated[Clip, Tag("clip")] | Annotated[ClipLoop, Tag("loop")], Discriminator(_clip_kind)]


class Output(SpecModel):
    """Where and how the final video is written."""

    file: str | None = Field(
        default=None, description="Output .mp4, relative to the spec's folder (default renders/NAME.mp4)."
    )
    crf: int = Field(default=18, ge=0, le=51, description="H.264 constant rate factor (lower is better quality).")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"] = (
        "medium"
    )
    size: SizeValue | None = Field(
        default=None,
        description="WIDTHxHEIGHT of the output (default: the first clip's); clips of another size are fitted inside, letterboxed.",
    )
    fade_in: DurationValue | None = Field(
        default=None, description="Fade the scene in from black (and silence): '1s', '12f'."
    )
    fade_out: DurationValue | None = Field(
        default=None, description="Fade the scene out to black (and silence) at its end."
    )


class SceneSpec(SpecModel):
    """A scene: clips, their settings, and the output."""

    scenekit: Literal[1] = Field(description="Spec version.")
    name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Scene name (default: file name)."
    )
    description: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict, description="Jinja2 variables for every string field.")
    include: list[str] = Field(default_factory=list, description="Spec files merged in before this one.")
    models: dict[str, WeightsLocation] = Field(
        default_factory=dict,
        description="Where a profile's weights are: profile name -> local folder or Hugging Face repo id.",
    )
    defaults: ClipSettings = Field(default_factory=ClipSettings)
    clips: list[ClipEntry] = Field(min_length=1)
    output: Output = Field(default_factory=Output)
