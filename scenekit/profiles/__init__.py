"""Model profiles: data files naming a backend, its constraints and its defaults."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from scenekit.errors import Location, SpecError, SpecIssue
from scenekit.graph.nodes import canonical_json


class Requirements(BaseModel):
    """What a profile needs to run."""

    model_config = ConfigDict(extra="forbid")
    gpu: bool = False
    vram_gb: float = 0
    """The least GPU memory it renders in (with the `auto` memory policy, streaming what does not fit)."""
    resident_gb: float | None = None
    """Measured peak GPU memory with every model resident (the fastest), where measured."""
    min_compute_capability: float | None = None


class Constraints(BaseModel):
    """Sizes and frame counts a profile accepts."""

    model_config = ConfigDict(extra="forbid")
    size_multiple: int = 1
    min_side: int = 16
    max_side: int = 8192
    frame_step: int = 1
    max_frames: int = 100_000
    overlap_step: int = 1
    keyframe_step: int = 1  # conditioning lands only on generated frames 0 and k*step+1

    def snap_frames(self, count: int) -> int:
        """The smallest valid generated length >= count (k*frame_step + 1 when frame_step > 1)."""
        if self.frame_step <= 1:
            return count
        return -(-(count - 1) // self.frame_step) * self.frame_step + 1

    def valid_overlap(self, count: int) -> bool:
        return self.overlap_step <= 1 or count % self.overlap_step == 1

    def valid_keyframe(self, generated_index: int) -> bool:
        return self.keyframe_step <= 1 or generated_index == 0 or generated_index % self.keyframe_step == 1


class ProfileDefaults(BaseModel):
    """Clip settings used when neither the clip nor the spec's defaults set them."""

    model_config = ConfigDict(extra="forbid")
    size: str = "768x512"
    fps: int | float | str = 24
    overlap: int = 17


class ModelProfile(BaseModel):
    """A named way of generating clips: which backend, with which weights and settings."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    backend: str
    version: int = 1
    description: str = ""
    annotate: bool = False
    requires: Requirements = Field(default_factory=Requirements)
    constraints: Constraints = Field(default_factory=Constraints)
    defaults: ProfileDefaults = Field(default_factory=ProfileDefaults)
    knobs: list[str] = Field(default_factory=list, description="Clip settings this profile lets a spec override.")

    @property
    def identity(self) -> str:
        """A digest of everything in the profile: changing any of it changes cache keys."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()[:16]


def _read_profile(text: str) -> ModelProfile:
    return ModelProfile.model_validate(YAML(typ="safe", pure=True).load(text))


@cache
def builtin_profiles() -> dict[str, ModelProfile]:
    """Profiles shipped in the package, by name."""
    found = {}
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".yaml"):
            profile = _read_profile(entry.read_text(encoding="utf-8"))
            found[profile.name] = profile
    return found


PROFILE_PATH_ENV = "SCENEKIT_PROFILE_PATH"


def available_profiles() -> dict[str, ModelProfile]:
    """Built-in profiles plus `*.yaml` profiles from the folders in `$SCENEKIT_PROFILE_PATH` (later ones win)."""
    profiles = dict(builtin_profiles())
    extra = os.environ.get(PROFILE_PATH_ENV, "")
    for folder in (Path(p) for p in extra.split(os.pathsep) if p):
        for path in sorted(folder.glob("*.yaml")):
            profile = _read_user_profile(path)
            profiles[profile.name] = profile
    return profiles


def _read_user_profile(path: Path) -> ModelProfile:
    """A profile from `$SCENEKIT_PROFILE_PATH`; raises SpecError located in the file when it cannot be used."""
    try:
        return _read_profile(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError, ValidationError) as exc:
        detail = exc.errors()[0] if isinstance(exc, ValidationError) else None
        message = (
            f"{'.'.join(str(part) for part in detail['loc'])}: {detail['msg']}" if detail else str(exc).splitlines()[0]
        )
        issue = SpecIssue(
            f"not a usable model profile: {message}",
            Location(path, 1, 1),
            hint=f"fix the file or take its folder out of ${PROFILE_PATH_ENV}",
        )
        raise SpecError([issue]) from None
