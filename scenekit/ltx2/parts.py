"""Where a profile's extra parts are: its single-file transformer, distilled LoRA and latent upsampler.

Each part is in the profile's weights folder when the folder holds it (a local folder, or a hub snapshot of
a repo that has everything, like `Lightricks/LTX-2`). A part the profile names in another repo than its
pipeline (LTX-2.3: diffusers folders in one repo, Lightricks' single-file checkpoints in another) is looked
up in that repo's snapshot in the Hugging Face cache. Each part's identity (for keys) is that of where it was
found, so two profiles share a cache entry only where they load the very same part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scenekit.weights import WeightsRef, WeightsSource


@dataclass(frozen=True)
class Part:
    """A part found on this machine: the file (or folder) and what it is, for keys."""

    path: Path
    identity: str


def locate(weights: WeightsSource, ref: WeightsRef, pipeline: WeightsRef) -> Part | None:
    """The part `ref` names (its `file`, else its `subfolder`), or None when this machine does not have it."""
    name = ref.file or ref.subfolder
    assert name is not None, "a part names a file or a subfolder"
    if (weights.folder / name).exists():
        return Part(weights.folder / name, weights.identity(name))
    if weights.hub is None or ref.repo == pipeline.repo:
        return None  # a folder of one's own holds every part; a snapshot of the pipeline repo lacks it
    from huggingface_hub import try_to_load_from_cache

    probe = ref.file or f"{ref.subfolder}/config.json"
    cached = try_to_load_from_cache(ref.repo, probe, revision=ref.revision)
    if not isinstance(cached, str):
        return None
    snapshot = Path(cached).parents[len(Path(probe).parts) - 1]
    return Part(snapshot / name, f"hf:{ref.repo}@{snapshot.name}:{name}")


def fetch_hint(profile: str, ref: WeightsRef, pipeline: WeightsRef) -> str:
    """How to download a missing part."""
    if ref.repo == pipeline.repo:
        return f"`scenekit fetch {profile}` downloads it"
    what = ref.file or f"--include '{ref.subfolder}/*'"
    return f"download it with `hf download {ref.repo} {what} --revision {ref.revision}`"
