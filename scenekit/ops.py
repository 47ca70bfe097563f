"""The registry of operations that nodes run."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from scenekit.graph.nodes import Node


class RunContext(Protocol):
    """What an operation may use while it runs."""

    workdir: Path

    def step(self, done: int, total: int) -> None:
        """Report progress; raises RenderCancelled when the render was cancelled."""


OpFunction = Callable[["Node", "dict[str, Path]", RunContext], None]


@dataclass(frozen=True)
class Operation:
    """A named, versioned function from a node's inputs to files in its work folder.

    Bump `version` whenever the output for the same inputs changes.
    """

    name: str
    version: int
    run: OpFunction


_REGISTRY: dict[str, Operation] = {}


def register(name: str, version: int) -> Callable[[OpFunction], OpFunction]:
    """Decorator that registers an operation under `name`."""

    def decorate(function: OpFunction) -> OpFunction:
        _REGISTRY[name] = Operation(name, version, function)
        return function

    return decorate


_MODULES = {"preview.": "scenekit.backends.preview", "stitch": "scenekit.stitch", "ltx2.": "scenekit.ltx2.ops"}


def get_operation(name: str) -> Operation:
    """The operation registered under `name`, importing the module that defines it on first use."""
    if name not in _REGISTRY:
        for prefix, module in _MODULES.items():
            if name.startswith(prefix):
                importlib.import_module(module)
    return _REGISTRY[name]
