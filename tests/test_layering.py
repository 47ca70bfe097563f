"""Package layering: imports go one way, from the command line down to media and files.

cli, watch, server, progress
engine                      (plan, execute, manifest, session)
graph                       (compile: expands clips through the backends)
backends, ltx2, ltxv, preview, stitch, conditioning
timeline, spec, profiles, weights
ops, runtime, cache, media, fsutil, hashing, errors, units
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scenekit

PACKAGE = Path(scenekit.__file__).parent
TOP = ("cli", "watch", "server")
BOTTOM = ("errors", "units", "fsutil", "hashing", "media", "cache", "runtime", "output_file")
FORBIDDEN = {
    # layer: the scenekit modules it must never import
    **{
        name: ("spec", "timeline", "graph", "engine", "backends", "ltx2", "ltxv", "preview", "stitch", "ops", *TOP)
        for name in BOTTOM
    },
    "ops": ("spec", "timeline", "engine", "backends", "ltx2", "ltxv", "preview", "stitch", *TOP),
    "spec": ("timeline", "graph", "engine", "backends", "ltx2", "ltxv", "preview", "stitch", "cache", *TOP),
    "timeline": ("graph", "engine", "backends", "ltx2", "ltxv", "preview", "stitch", *TOP),
    "backends": ("engine", *TOP, "progress"),
    "ltx2": ("engine", "backends", "ltxv", *TOP, "progress"),
    "ltxv": ("engine", "backends", "ltx2", *TOP, "progress"),
    "preview": ("engine", "backends", "stitch", *TOP, "progress"),
    "stitch": ("engine", "preview", "backends", "ltx2", "ltxv", *TOP, "progress"),
    "graph": ("engine", *TOP, "progress"),
    "engine": (*TOP, "progress"),
    "server": ("cli", "watch", "progress"),  # a top layer: it uses the engine like the command line
}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, and every `scenekit.*` module it names in a string (lazy imports)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("scenekit."):
            modules.add(node.value)
    return modules


def _files(layer: str) -> list[Path]:
    folder = PACKAGE / layer
    return sorted(folder.glob("*.py")) if folder.is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_the_layers_above_it(layer: str):
    files = _files(layer)
    assert files and all(path.is_file() for path in files)
    above = tuple(f"scenekit.{name}" for name in FORBIDDEN[layer])
    for path in files:
        wrong = {m for m in imported_modules(path) if m in above or m.startswith(tuple(f"{a}." for a in above))}
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}"
