"""What git says of a project's files, asked so that no command a repository's config names can run."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def git_state(spec_file: Path, files: list[Path]) -> dict[str, Any] | None:
    """The commit of the spec's repository and whether the spec or its files have uncommitted changes
    (`dirty` is None when it cannot be checked safely).

    A project may come with a `.git` of its own (an archive, not a clone) whose config names commands
    (`core.fsmonitor`, filter drivers, diff drivers): git is asked so that none of them runs.
    """
    folder = spec_file.parent
    commit = _git(folder, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if not commit:
        return None
    overrides = _neutralised_commands(folder)
    if overrides is None:
        return {"commit": commit.strip(), "dirty": None}
    status = _git(
        folder, "status", "--porcelain", "--ignore-submodules=all", "--", *(str(f) for f in files), overrides=overrides
    )
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


_GIT_SAFE = (
    "--no-pager",
    "--no-optional-locks",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "diff.external=",
)
_DRIVER_COMMANDS = r"^(filter|diff)\..*\.(clean|smudge|process|required|textconv|command)$"


def _neutralised_commands(folder: Path) -> list[str] | None:
    """`-c NAME=` for every filter and diff driver command configured (a filter driver is also made
    optional), or None if one cannot be written as `-c` (its name holds `=`)."""
    listed = _git(folder, "config", "--null", "--get-regexp", _DRIVER_COMMANDS, ok=(0, 1))  # 1: none
    if listed is None:
        return None
    overrides = []
    for item in filter(None, listed.split("\0")):
        name = item.partition("\n")[0]
        if "=" in name:
            log.warning(
                "%s: git config names a driver `%s` that cannot be switched off: not checking for uncommitted changes",
                folder,
                name,
            )
            return None
        overrides += ["-c", f"{name}=false" if name.endswith(".required") else f"{name}="]
    return overrides


def _git(folder: Path, *args: str, overrides: list[str] | None = None, ok: tuple[int, ...] = (0,)) -> str | None:
    """Run git in `folder` without the system config, git's environment variables and the commands
    a config can name (`overrides` adds `-c` options); its output, or None if it failed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *_GIT_SAFE, *(overrides or []), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("git %s: %s", args[0], exc)
        return None
    if done.returncode not in ok:
        log.debug("git %s in %s exited %d: %s", args[0], folder, done.returncode, done.stderr.strip())
        return None
    return done.stdout
