"""Where a profile's weights are: the spec's or the user config's `models:` mapping,
`$SCENEKIT_MODELS/<profile>`, or the Hugging Face cache (downloading only when `scenekit fetch` asks for it)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from scenekit.spec.assets import cached_sha256
from scenekit.userconfig import ModelsMapping, config_path

MODELS_ENV = "SCENEKIT_MODELS"
_REPO_ID = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")


class WeightsRef(BaseModel):
    """Weights on the Hugging Face hub: a repo at a revision, optionally one file or subfolder."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    repo: str
    revision: str = "main"
    file: str | None = None
    subfolder: str | None = None
    strength: float | None = None


@dataclass(frozen=True)
class WeightsSource:
    """Resolved weights: a folder laid out like the hub repo (a local folder or a hub cache snapshot)."""

    folder: Path
    described: str
    hub: str | None = None  # "repo@commit" for a hub snapshot

    def identity(self, *parts: str) -> str:
        """What these weights (or some of their subfolders and files) are, for cache keys: the hub
        commit of a snapshot, or a digest of the local files."""
        if self.hub is not None:
            return f"hf:{self.hub}:{','.join(parts) or '*'}"
        paths = [self.folder / part for part in parts] if parts else [self.folder]
        return "dir:" + hashlib.sha256("".join(folder_digest(p) for p in paths).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class HubFiles:
    """Files of one hub repo at a revision: glob patterns as `snapshot_download(allow_patterns=...)` takes them."""

    repo: str
    revision: str
    patterns: tuple[str, ...]

    def command(self) -> str:
        """The `hf download` command that fetches exactly these files (the whole repo without patterns)."""
        includes = [f"--include '{pattern}'" for pattern in self.patterns]
        return " ".join([f"hf download {self.repo} --revision {self.revision}", *includes])


@dataclass(frozen=True)
class ProfileWeights:
    """What a profile loads from the hub: the pipeline repo (whose snapshot or local copy is the profile's
    weights folder) and, per repo, the files a render reads (the pipeline's first)."""

    pipeline: WeightsRef
    files: tuple[HubFiles, ...]


class MissingWeights(Exception):
    """No weights for a profile in any of the places looked."""


def folder_digest(folder: Path) -> str:
    """A cheap fingerprint of a weights folder or file: configs by content, weights by name, size and mtime."""
    digest = hashlib.sha256()
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        stat = path.stat()
        digest.update(path.name.encode() if path == folder else str(path.relative_to(folder)).encode())
        if path.suffix in (".json", ".txt", ".model", ".yaml"):
            digest.update(cached_sha256(path).encode())
        else:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _local(folder: Path, described: str) -> WeightsSource:
    return WeightsSource(folder.resolve(), described)


def resolve_weights(
    profile: str, default: WeightsRef, mappings: Sequence[ModelsMapping], files: Sequence[str] = ()
) -> WeightsSource:
    """Find a profile's weights: the first `models:` mapping that names the profile (the spec's, then the
    user config's), else `$SCENEKIT_MODELS/<profile>`, else the Hugging Face cache. Raises MissingWeights
    naming every place looked and how to fetch them (only `files`, the patterns of the repo the profile
    needs, when given)."""
    looked = []
    for mapping in mappings:
        if profile not in mapping.entries:
            continue
        written = mapping.entries[profile]
        where = f"{mapping.label}.{profile} = {written}"
        folder = mapping.folder(profile)
        if folder.is_dir():
            return _local(folder, where)
        match = _REPO_ID.match(written)
        if match:
            ref = WeightsRef(repo=match["repo"], revision=match["revision"] or default.revision)
            return _from_hub_cache(profile, ref, [where], files)
        looked.append(f"{where} (not a folder, not a repo id)")
        break
    env_root = os.environ.get(MODELS_ENV)
    if env_root:
        folder = Path(env_root).expanduser() / profile
        if folder.is_dir():
            return _local(folder, f"${MODELS_ENV}/{profile}")
        looked.append(f"${MODELS_ENV}/{profile} = {folder}")
    else:
        looked.append(f"${MODELS_ENV}/{profile} (${MODELS_ENV} is not set)")
    return _from_hub_cache(profile, default, looked, files)


def _from_hub_cache(profile: str, ref: WeightsRef, looked: list[str], files: Sequence[str]) -> WeightsSource:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref.repo, "model_index.json", revision=ref.revision)
    if isinstance(cached, str):
        snapshot = Path(cached).parent
        return WeightsSource(snapshot, f"Hugging Face cache {ref.repo}@{ref.revision}", f"{ref.repo}@{snapshot.name}")
    looked.append(f"Hugging Face cache: {ref.repo}@{ref.revision}")
    raise MissingWeights(
        f"no weights for model profile `{profile}`; looked in: "
        + "; ".join(looked)
        + f". Fetch them with `scenekit fetch {profile}` (or `{HubFiles(ref.repo, ref.revision, tuple(files)).command()}`), "
        f"or name a folder holding them in `models: {{{profile}: /path/to/folder}}` (in the spec or in {config_path()}) "
        f"or in ${MODELS_ENV}/{profile}."
    )


def missing_parts(source: WeightsSource, weights: ProfileWeights) -> list[str]:
    """The files of repos other than the pipeline's (`repo:pattern`) that `source`'s folder lacks and, when
    `source` is a hub snapshot, that repo's snapshot in the Hugging Face cache lacks too (a folder part
    counts as there when its `config.json` is), as `scenekit.ltx2.parts` looks for them."""
    from huggingface_hub import try_to_load_from_cache

    missing = []
    for files in weights.files:
        if files.repo == weights.pipeline.repo:
            continue
        for pattern in files.patterns:
            name = pattern.removesuffix("/*")
            probe = name if name == pattern else f"{name}/config.json"
            found = (source.folder / name).exists() or (
                source.hub is not None
                and isinstance(try_to_load_from_cache(files.repo, probe, revision=files.revision), str)
            )
            if not found:
                missing.append(f"{files.repo}:{pattern}")
    return missing
