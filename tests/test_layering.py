"""Package layering: the graph layer does not reach up into the engine, watch mode or the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import scenekit

PACKAGE = Path(scenekit.__file__).parent
ABOVE_GRAPH = ("scenekit.engine", "scenekit.watch", "scenekit.cli", "scenekit.progress")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_graph_does_not_import_the_layers_above_it():
    files = sorted((PACKAGE / "graph").glob("*.py"))
    assert any(f.name == "export.py" for f in files)
    for path in files:
        wrong = {m for m in imported_modules(path) if m.startswith(ABOVE_GRAPH)}
        assert not wrong, f"{path.name} imports {sorted(wrong)}"
