"""The files a spec names by path, read from the spec as written: conditioning images and videos, LoRA files,
IC-LoRA control videos and files. `watch` watches them even where the render does not read them (LoRAs under
`--model preview`) and while the spec is invalid (a LoRA it names is not there yet), so saving one renders."""

from __future__ import annotations

from pathlib import Path

from scenekit.spec.loader import LoadedSpec
from scenekit.spec.models import Clip, ClipSettings
from scenekit.spec.paths import PathPolicy


def named_files(loaded: LoadedSpec, policy: PathPolicy) -> list[Path]:
    """The files `loaded` names (relative to the spec's folder, as the timeline resolves them), whether or not
    they exist; paths the policy refuses are left out. A loop's clips are templates: the render graph names
    their files once the spec is valid."""
    written = _lora_files(loaded.spec.defaults)
    for clip in loaded.spec.clips:
        if not isinstance(clip, Clip):
            continue
        written += [source for c in clip.conditioning if (source := c.image or c.video) is not None]
        written += _lora_files(clip)
        if clip.control is not None:
            written.append(clip.control.video)
            if clip.control.lora.endswith(".safetensors"):
                written.append(clip.control.lora)
    found = set()
    for path in written:
        try:
            found.add(policy.resolve(path, loaded.path.parent))
        except ValueError:  # outside the project, or not a usable name: the spec's own error says so
            continue
    return sorted(found)


def _lora_files(settings: ClipSettings) -> list[str]:
    """The LoRA files of the project that `defaults` or a clip names (not hub files, not presets)."""
    return [entry.file for entry in settings.loras or [] if entry.file is not None and entry.repo is None]
