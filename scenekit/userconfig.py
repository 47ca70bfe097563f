"""This machine's settings: `~/.config/scenekit/config.yaml` (or `$SCENEKIT_CONFIG`).

    models:                       # where a profile's weights are on this machine
      ltx2-distilled: /data/models/LTX-2
      ltx2-dev-fp8: Lightricks/LTX-2@<commit>
    runtime:
      speed: compiled             # the speed policy of every render here (`--speed` wins)
      memory: offload             # the memory policy (`--memory` wins)

A spec's own `models:` wins over this file; both win over `$SCENEKIT_MODELS` and the Hugging Face cache.
Relative folders are relative to the file that names them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scenekit.spec.validation import validated
from scenekit.spec.yaml_source import read_yaml

CONFIG_ENV = "SCENEKIT_CONFIG"


class RuntimeConfig(BaseModel):
    """How models run on this machine."""

    model_config = ConfigDict(extra="forbid")
    speed: Literal["auto", "eager", "compiled", "fp8"] | None = Field(
        default=None, description="speed policy of every render (default: each profile's)"
    )
    memory: Literal["auto", "resident", "offload"] | None = Field(
        default=None, description="memory policy of every render (default: auto)"
    )


class UserConfig(BaseModel):
    """The settings file's schema."""

    model_config = ConfigDict(extra="forbid")
    models: dict[str, str] = Field(default_factory=dict, description="profile -> weights folder or `org/repo@revision`")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)


@dataclass(frozen=True)
class ModelsMapping:
    """One `models:` mapping (a spec's or the user's): profile -> folder or repo id, and where it was written."""

    label: str
    entries: dict[str, str] = field(default_factory=dict)
    base: Path = Path(".")

    def folder(self, profile: str) -> Path:
        """Where the entry for `profile` points if it is a folder (`~` expanded, relative to `base`)."""
        return self.base / Path(self.entries[profile]).expanduser()


def config_path() -> Path:
    """`$SCENEKIT_CONFIG`, else `$XDG_CONFIG_HOME/scenekit/config.yaml` (default `~/.config`)."""
    configured = os.environ.get(CONFIG_ENV)
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "scenekit" / "config.yaml"


def _user_config(path: Path) -> UserConfig:
    """The config file at `path` (defaults when there is none); raises SpecError, located in the file, when invalid."""
    if not path.is_file():
        return UserConfig()
    data, sources, _ = read_yaml(path)
    return validated(UserConfig, data if data is not None else {}, sources)


def user_models() -> ModelsMapping:
    """The user config's `models:` (empty when there is no config file)."""
    path = config_path()
    return ModelsMapping(f"{path} models", dict(_user_config(path).models), path.parent)


def user_runtime() -> RuntimeConfig:
    """The user config's `runtime:` section."""
    return _user_config(config_path()).runtime
