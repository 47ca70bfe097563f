"""The manifest written next to each output: what was run, so a video traces back to its spec revision."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from scenekit import __version__
from scenekit.engine.plan import PlannedNode
from scenekit.gitstate import git_state
from scenekit.graph.compile import RenderGraph
from scenekit.ops import get_operation
from scenekit.output_file import manifest_path
from scenekit.spec.loader import LoadedSpec
from scenekit.timeline import Timeline
from scenekit.units import format_rate

log = logging.getLogger(__name__)

_PACKAGES = ("av", "numpy", "pillow", "torch", "diffusers", "transformers", "pydantic")


def read_previous_nodes(output_file: Path) -> dict[str, dict[str, Any]]:
    """Node records of the last finished render of this output, by node id (empty if none)."""
    path = manifest_path(output_file)
    try:
        manifest = json.loads(path.read_text())
        return {record["id"]: record for record in manifest["nodes"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(
            "%s: not a readable manifest (%s: %s); the plan cannot name what changed", path, exc.__class__.__name__, exc
        )
        return {}


def build_manifest(
    *,
    root: Path,
    loaded: LoadedSpec,
    asset_files: list[Path],
    timeline: Timeline,
    render_graph: RenderGraph,
    plan: list[PlannedNode],
    seconds: dict[str, float],
    output_sha256: str,
    placements: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything needed to trace and explain a render; the spec files as they were read for it.

    `placements` says where each node that ran ran (`ran_on`: executor, host, and for Ray the worker and GPUs).
    """
    placements = placements or {}
    spec_file, spec_files = loaded.path, loaded.files
    nodes = []
    for planned in plan:
        node = planned.node
        record = node.record()
        record.update(
            {
                "status": "ran" if node.id in seconds else "cached",
                "seconds": round(seconds.get(node.id, 0.0), 3),
                "ran_on": placements.get(node.id),
                "op_version": get_operation(node.op).version,
                "input_keys": {name: render_graph.node(dep).key for name, dep in node.inputs.items()},
            }
        )
        nodes.append(record)
    width, height = timeline.size

    def shown(path: Path) -> str:
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    spec_hashes = [{"path": shown(p), "sha256": loaded.sha256[p]} for p in spec_files]
    return {
        "scenekit": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": {
            "file": shown(spec_file),
            "project": str(root),
            "sha256": hashlib.sha256("".join(f["sha256"] for f in spec_hashes).encode()).hexdigest(),
            "files": spec_hashes,
            "git": git_state(spec_file, spec_files + asset_files),
        },
        "output": {
            "file": shown(timeline.output_file),
            "sha256": output_sha256,
            "frames": timeline.total_frames,
            "fps": format_rate(timeline.fps),
            "duration_s": float(timeline.total_frames / timeline.fps),
            "width": width,
            "height": height,
        },
        "profiles": {c.profile.name: c.profile.identity for c in timeline.clips},
        "seeds": {c.id: c.seed for c in timeline.clips},
        "versions": {"python": platform.python_version(), **_package_versions()},
        "total_seconds": round(sum(seconds.values()), 3),
        "nodes": nodes,
    }


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
