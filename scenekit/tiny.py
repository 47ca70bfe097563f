"""Tiny random weights for any profile of any family, in the real folder layout and file formats.

    python -m scenekit.tiny PROFILE FOLDER

writes what `PROFILE` loads (diffusers folders, the single-file checkpoints it names, in fp8 or NVFP4 as
the profile stores them, its LoRA) into FOLDER, at toy sizes that run in seconds on a CPU. Point
`$SCENEKIT_MODELS/<profile>` or a spec's `models:` at it and render with `SCENEKIT_DEVICE=cpu`: the tests
and the benches use it, and so can anyone trying a model path without downloading tens of gigabytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scenekit.backends import get_family, load
from scenekit.profiles import available_profiles


def build_tiny_weights(profile: str, folder: Path, seed: int = 0) -> Path:
    """Write tiny random weights for `profile` into `folder`; raises ValueError for an unknown profile or
    one whose family needs no weights."""
    profiles = available_profiles()
    if profile not in profiles:
        raise ValueError(f"unknown profile `{profile}`; `scenekit profiles` lists them")
    family = get_family(profiles[profile].backend)
    if family.tiny_weights is None:
        raise ValueError(f"profile `{profile}` needs no weights")
    built: Path = load(family.tiny_weights)(folder, seed=seed, profile=profile)
    return built


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scenekit.tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="a model profile, e.g. ltx2-distilled")
    parser.add_argument("folder", type=Path, help="where to write the weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        folder = build_tiny_weights(args.profile, args.folder, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(
        f"wrote tiny `{args.profile}` weights to {folder}; render with SCENEKIT_DEVICE=cpu "
        f"SCENEKIT_MODELS={folder.parent} (the folder must be named after the profile) or a spec's `models:`"
    )


if __name__ == "__main__":
    main()
