"""The render DAG as Mermaid or Graphviz DOT text."""

from __future__ import annotations

import re

from scenekit.engine.plan import PlannedNode


def _safe_id(node_id: str) -> str:
    return "n_" + re.sub(r"\W", "_", node_id)


def _edges(plan: list[PlannedNode]) -> list[tuple[str, str]]:
    return [(dep, item.node.id) for item in plan for dep in item.node.inputs.values()]


def to_mermaid(plan: list[PlannedNode]) -> str:
    """A Mermaid flowchart; cached nodes are drawn dashed."""
    lines = ["flowchart LR"]
    for item in plan:
        node = item.node
        lines.append(f'  {_safe_id(node.id)}["{node.id}<br/><small>{node.op} · {item.status}</small>"]')
        if item.status == "cached":
            lines.append(f"  class {_safe_id(node.id)} cached")
    lines += [f"  {_safe_id(source)} --> {_safe_id(target)}" for source, target in _edges(plan)]
    lines.append("  classDef cached stroke-dasharray: 4 3")
    return "\n".join(lines) + "\n"


def to_dot(plan: list[PlannedNode]) -> str:
    """A Graphviz digraph; cached nodes are drawn dashed."""
    lines = ["digraph scenekit {", "  rankdir=LR;", "  node [shape=box];"]
    for item in plan:
        node = item.node
        style = ', style="dashed"' if item.status == "cached" else ""
        label = f"{node.id}\\n{node.op} · {item.status}"
        lines.append(f'  "{node.id}" [label="{label}"{style}];')
    lines += [f'  "{source}" -> "{target}";' for source, target in _edges(plan)]
    lines.append("}")
    return "\n".join(lines) + "\n"
