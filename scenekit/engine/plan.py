"""Which nodes a render will run, and why: compared with the cache and with the last render."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from scenekit.cache import CacheStore
from scenekit.graph.compile import RenderGraph
from scenekit.graph.nodes import Node, canonical_json
from scenekit.ops import get_operation


@dataclass(frozen=True)
class PlannedNode:
    """A node, whether it runs or comes from the cache, and the reason it runs."""

    node: Node
    status: Literal["run", "cached"]
    reason: str

    def to_json(self) -> dict[str, Any]:
        node = self.node
        return {
            "id": node.id,
            "op": node.op,
            "clip": node.clip,
            "key": node.key,
            "status": self.status,
            "reason": self.reason,
        }


def make_plan(render_graph: RenderGraph, cache: CacheStore, previous: dict[str, dict[str, Any]]) -> list[PlannedNode]:
    """Plan every node in dependency order; `previous` holds the last render's node records by id."""
    needed = render_graph.uncached(cache)
    records = list(previous.values())
    plan = []
    for node in render_graph.ordered():
        if node.id not in needed:
            reason = "" if cache.has(node.key) else "not needed: what uses it is cached"
            plan.append(PlannedNode(node, "cached", reason))
            continue
        plan.append(PlannedNode(node, "run", explain(node, records, render_graph)))
    return plan


_LISTED = 3  # a reason names at most this many changes, and this many changed inputs


def explain(node: Node, records: list[dict[str, Any]], render_graph: RenderGraph) -> str:
    """Why `node` runs, in the spec's terms (`clips[2].prompt changed`).

    It is compared with the last render's node of the same operation that it differs from least (the one
    with its id first among equals), so renaming or reordering clips never pairs it with another clip's node.
    """
    same_op = [record for record in records if record.get("op") == node.op]
    if not same_op:
        return "new"
    if any(record.get("key") == node.key for record in same_op):
        return "cache entry missing"
    params = json.loads(canonical_json(node.params))  # as the manifest stores them
    compared = [(changes_since(node, params, record, render_graph), record.get("id") != node.id) for record in same_op]
    reasons, _ = min(compared, key=lambda found: (len(found[0]), found[1]))
    if len(reasons) > _LISTED:
        return "; ".join(reasons[:_LISTED]) + f"; and {len(reasons) - _LISTED} more"
    return "; ".join(reasons) or "changed"


def changes_since(node: Node, params: dict[str, Any], record: dict[str, Any], render_graph: RenderGraph) -> list[str]:
    """What differs between `node` (its `params` as JSON) and a node record of the last render, in the spec's terms."""
    reasons: list[str] = []
    old_params = record.get("params", {})
    for name in sorted(set(params) | set(old_params)):
        for path in changed_paths(params.get(name), old_params.get(name), name):
            _add(reasons, f"{source_of(node.sources, path)} changed")
    old_files = record.get("files", {})
    for name, asset in node.files.items():
        if old_files.get(name, {}).get("sha256") != asset.sha256:
            _add(reasons, f"asset {asset.written} changed")
    if node.profile != record.get("profile"):
        _add(reasons, f"model profile changed ({node.sources.get('model', 'model')})")
    old_inputs = set(record.get("input_keys", {}).values())
    changed = [dep for dep in node.inputs.values() if render_graph.node(dep).key not in old_inputs]
    if len(changed) > _LISTED:
        _add(reasons, f"inputs {', '.join(changed[:_LISTED])} and {len(changed) - _LISTED} more changed")
    else:
        for dep in changed:
            _add(reasons, f"input {dep} changed")
    if record.get("op_version") not in (None, get_operation(node.op).version):
        _add(reasons, "operation version changed")
    return reasons


def changed_paths(new: Any, old: Any, path: str) -> list[str]:
    """The paths (`clips[0].label`) at which two JSON values differ, as deep as both have the same shape."""
    if isinstance(new, dict) and isinstance(old, dict):
        return [
            found
            for key in sorted(set(new) | set(old))
            for found in changed_paths(new.get(key), old.get(key), f"{path}.{key}")
        ]
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [
            found
            for index, pair in enumerate(zip(new, old, strict=True))
            for found in changed_paths(*pair, f"{path}[{index}]")
        ]
    return [] if new == old else [path]


def source_of(sources: dict[str, str], path: str) -> str:
    """The spec field a parameter path comes from: the source named for the path or the nearest part above it."""
    part = path
    while part not in sources:
        cut = max(part.rfind("."), part.rfind("["))
        if cut <= 0:
            return path
        part = part[:cut]
    return sources[part]


def _add(reasons: list[str], reason: str) -> None:
    if reason not in reasons:
        reasons.append(reason)
