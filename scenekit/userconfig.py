"""This machine's settings: `~/.config/scenekit/config.yaml` (or `$SCENEKIT_CONFIG`).

    models:                       # where a profile's weights are on this machine
      ltx2-distilled: /data/models/LTX-2
      ltx2-dev-fp8: Lightricks/LTX-2@<commit>
    loras:                        # LoRAs specs name as `{preset: NAME}`
      my-style: {file: loras/my-style.safetensors, weight: 0.8}
      dolly-in: {repo: org/name@revision, file: dolly-in.safetensors, stages: [1]}
    runtime:
      speed: compiled             # the speed policy of every render here (`--speed` wins)
      memory: offload             # the memory policy (`--memory` wins)
    executor:                     # what runs the nodes (`--executor` and `--address` win)
      name: ray                   # local (default) or ray
      address: ray://head:10001   # the Ray cluster; none: a local Ray on this machine's GPUs

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


class LoraPreset(BaseModel):
    """A LoRA specs name as `{preset: NAME}`: a file (relative to this config file) or a file in a hub repo."""

    model_config = ConfigDict(extra="forbid")
    file: str
    repo: str | None = Field(default=None, description="`org/name` or `org/name@revision` holding `file`")
    weight: float = 1.0
    stages: list[int] | None = None


class ExecutorConfig(BaseModel):
    """What runs a render's nodes on this machine."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["local", "ray"] = Field(default="local", description="local (this process) or ray (GPU actors)")
    address: str | None = Field(default=None, description="Ray cluster address; none: a local Ray instance")


class UserConfig(BaseModel):
    """The settings file's schema."""

    model_config = ConfigDict(extra="forbid")
    models: dict[str, str] = Field(default_factory=dict, description="profile -> weights folder or `org/repo@revision`")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    loras: dict[str, LoraPreset] = Field(default_factory=dict, description="LoRA presets specs name")


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


@dataclass(frozen=True)
class UserSettings:
    """This machine's settings, read from the config file once: where weights are and how models run."""

    models: ModelsMapping
    runtime: RuntimeConfig
    loras: dict[str, LoraPreset] = field(default_factory=dict)
    """LoRA presets; their files are relative to `models.base` (the config file's folder)."""
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


def user_settings() -> UserSettings:
    """The user config (defaults when there is no config file); raises SpecError, located in the file,
    when it is invalid."""
    path = config_path()
    config = UserConfig()
    if path.is_file():
        data, sources, _ = read_yaml(path)
        config = validated(UserConfig, data if data is not None else {}, sources)
    return UserSettings(
        ModelsMapping(f"{path} models", dict(config.models), path.parent),
        config.runtime,
        dict(config.loras),
        config.executor,
    )
