"""The render DAG as Mermaid or Graphviz DOT text."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from scenekit.graph.nodes import Node


def _safe_id(node_id: str) -> str:
    return "n_" + re.sub(r"\W", "_", node_id)


def _edges(nodes: Sequence[Node]) -> list[tuple[str, str]]:
    return [(dep, node.id) for node in nodes for dep in node.inputs.values()]


def to_mermaid(nodes: Sequence[Node], status: Mapping[str, str]) -> str:
    """A Mermaid flowchart of `nodes`, each labelled with its `status` by id (`run` or `cached`); cached ones dashed."""
    lines = ["flowchart LR"]
    for node in nodes:
        lines.append(f'  {_safe_id(node.id)}["{node.id}<br/><small>{node.op} · {status[node.id]}</small>"]')
        if status[node.id] == "cached":
            lines.append(f"  class {_safe_id(node.id)} cached")
    lines += [f"  {_safe_id(source)} --> {_safe_id(target)}" for source, target in _edges(nodes)]
    lines.append("  classDef cached stroke-dasharray: 4 3")
    return "\n".join(lines) + "\n"


def to_dot(nodes: Sequence[Node], status: Mapping[str, str]) -> str:
    """A Graphviz digraph of `nodes`, each labelled with its `status` by id (`run` or `cached`); cached ones dashed."""
    lines = ["digraph scenekit {", "  rankdir=LR;", "  node [shape=box];"]
    for node in nodes:
        style = ', style="dashed"' if status[node.id] == "cached" else ""
        label = f"{node.id}\\n{node.op} · {status[node.id]}"
        lines.append(f'  "{node.id}" [label="{label}"{style}];')
    lines += [f'  "{source}" -> "{target}";' for source, target in _edges(nodes)]
    lines.append("}")
    return "\n".join(lines) + "\n"
