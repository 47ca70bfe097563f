"""Which nodes a render will run, and why: compared with the cache and with the last render."""

from __future__ import annotations

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
        return {"id": node.id, "op": node.op, "clip": node.clip, "key": node.key, "status": self.status, "reason": self.reason}


def make_plan(render_graph: RenderGraph, cache: CacheStore, previous: dict[str, dict[str, Any]]) -> list[PlannedNode]:
    """Plan every node in dependency order; `previous` holds the last render's node records by id."""
    needed = render_graph.uncached(cache)
    by_slot = {(record.get("op"), record.get("slot")): record for record in previous.values()}
    slots = node_slots(render_graph)
    plan = []
    for node in render_graph.ordered():
        if node.id not in needed:
            reason = "" if cache.has(node.key) else "not needed: what uses it is cached"
            plan.append(PlannedNode(node, "cached", reason))
            continue
        record = previous.get(node.id) or by_slot.get((node.op, slots[node.id]))
        plan.append(PlannedNode(node, "run", explain(node, record, render_graph)))
    return plan


def node_slots(render_graph: RenderGraph) -> dict[str, int]:
    """Position of each node among the nodes of its op: matches renamed clips to their last render."""
    counts: dict[str, int] = {}
    slots = {}
    for node in render_graph.ordered():
        slots[node.id] = counts.get(node.op, 0)
        counts[node.op] = slots[node.id] + 1
    return slots


_LISTED_INPUTS = 2  # a reason names at most this many changed inputs


def explain(node: Node, record: dict[str, Any] | None, render_graph: RenderGraph) -> str:
    """Why `node` runs, in the spec's terms (`clips[2].prompt changed`), given its last record."""
    if record is None:
        return "new"
    if record.get("key") == node.key:
        return "cache entry missing"
    reasons: list[str] = []
    old_params = record.get("params", {})
    for name in sorted(set(node.params) | set(old_params)):
        if canonical_json(node.params.get(name)) != canonical_json(old_params.get(name)):
            _add(reasons, f"{node.sources.get(name, name)} changed")
    old_files = record.get("files", {})
    for name, asset in node.files.items():
        if old_files.get(name, {}).get("sha256") != asset.sha256:
            _add(reasons, f"asset {asset.written} changed")
    if node.profile != record.get("profile"):
        _add(reasons, f"model profile changed ({node.sources.get('model', 'model')})")
    old_inputs = record.get("input_keys", {})
    changed = [dep for name, dep in node.inputs.items() if old_inputs.get(name) != render_graph.node(dep).key]
    if len(changed) > _LISTED_INPUTS:
        _add(reasons, f"inputs {', '.join(changed[:_LISTED_INPUTS])} and {len(changed) - _LISTED_INPUTS} more changed")
    else:
        for dep in changed:
            _add(reasons, f"input {dep} changed")
    if record.get("op_version") not in (None, get_operation(node.op).version):
        _add(reasons, "operation version changed")
    return "; ".join(reasons) or "changed"


def _add(reasons: list[str], reason: str) -> None:
    if reason not in reasons:
        reasons.append(reason)
