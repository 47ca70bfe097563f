"""Compile a timeline into the render DAG and give every node its content key."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from scenekit.backends import UnknownBackend, get_backend
from scenekit.cache import CacheStore
from scenekit.errors import SpecError, SpecIssue
from scenekit.graph.nodes import Node
from scenekit.ops import get_operation
from scenekit.stitch import stitch_nodes
from scenekit.timeline import ResolvedClip, Timeline


@dataclass
class RenderGraph:
    """The DAG of a render; `target` is the node whose output is the final video."""

    graph: nx.DiGraph
    target: str

    def node(self, node_id: str) -> Node:
        return self.graph.nodes[node_id]["node"]

    def uncached(self, cache: CacheStore, start: str | None = None, have: Collection[str] = ()) -> set[str]:
        """`start` (default: the target) and what it needs, where neither the cache nor `have` holds them."""
        missing: set[str] = set()
        stack = [start or self.target]
        while stack:
            node = self.node(stack.pop())
            if node.id in missing or node.id in have or cache.has(node.key):
                continue
            missing.add(node.id)
            stack.extend(node.inputs.values())
        return missing

    @cached_property
    def _order(self) -> list[str]:
        return list(nx.lexicographical_topological_sort(self.graph))  # the graph does not change once compiled

    def ordered(self) -> list[Node]:
        """Nodes in a stable dependency order."""
        return [self.node(n) for n in self._order]


def compile_timeline(timeline: Timeline) -> RenderGraph:
    """Expand every clip through its profile's backend, add the segment and stitch nodes, and compute keys.

    Raises SpecError, located at the clip, when a node reads an input that no node makes.
    """
    nodes: list[Node] = []
    frames_node: dict[str, str] = {}
    for clip in _clips_in_dependency_order(timeline):
        try:
            backend = get_backend(clip.profile.backend)
        except UnknownBackend as exc:
            raise SpecError([clip.model_issue(f"model `{clip.profile.name}`: {exc}")]) from None
        expanded = backend.expand(clip, timeline, frames_node.__getitem__)
        nodes.extend(expanded.nodes)
        frames_node[clip.id] = expanded.frames
    *segments, stitch = stitch_nodes(timeline, [frames_node[c.id] for c in timeline.clips])
    nodes.extend((*segments, stitch))
    graph = nx.DiGraph()
    graph.add_nodes_from((node.id, {"node": node}) for node in nodes)
    _check_inputs(graph, timeline)
    graph.add_edges_from((dep, node.id) for node in nodes for dep in node.inputs.values())
    for node_id in nx.topological_sort(graph):
        node: Node = graph.nodes[node_id]["node"]
        input_keys = {name: graph.nodes[dep]["node"].key for name, dep in node.inputs.items()}
        node.compute_key(get_operation(node.op).version, input_keys)
    return RenderGraph(graph, stitch.id)


def _check_inputs(graph: nx.DiGraph, timeline: Timeline) -> None:
    """Every input of every node is a node of the graph; else a SpecError naming each clip that reads a missing one."""
    issues = []
    for node_id, data in graph.nodes(data=True):
        node: Node = data["node"]
        missing = {name: dep for name, dep in node.inputs.items() if dep not in graph}
        if not missing:
            continue
        reads = ", ".join(f"`{name}` from `{dep}`" for name, dep in missing.items())
        message = f"node `{node_id}` reads {reads}, which this scene does not make"
        if node.clip is None:
            issues.append(SpecIssue(message, hint="please report this"))
            continue
        clip = timeline.clip(node.clip)
        issues.append(
            SpecIssue(
                f"scenekit cannot build clip `{clip.id}`: {message}",
                clip.at,
                f"clips[{clip.index}]",
                "change what the clip builds on (continue, conditioning, drift_control), and please report this",
            )
        )
    if issues:
        raise SpecError(issues)


def _clips_in_dependency_order(timeline: Timeline) -> list[ResolvedClip]:
    deps = nx.DiGraph()
    for clip in timeline.clips:
        deps.add_node(clip.id)
        for target in clip.depends_on:
            deps.add_edge(target, clip.id)
    order = {clip.id: index for index, clip in enumerate(timeline.clips)}
    return [timeline.clip(i) for i in nx.lexicographical_topological_sort(deps, key=order.__getitem__)]
