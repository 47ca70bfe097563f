"""The registry of operations that nodes run."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from scenekit.graph.nodes import Node

T = TypeVar("T")


class NodeOutput:
    """A node's output as later nodes read it: the files of its cache entry, and the values the node
    kept in memory during this render (read those instead of decoding the files again).

    Held values are shared between readers: treat them as read-only.
    """

    def __init__(self, folder: Callable[[], Path], held: dict[str, Any] | None = None):
        self._folder = folder
        self._held = dict(held or {})

    @classmethod
    def committed(cls, folder: Path) -> NodeOutput:
        """The output of an entry already committed in `folder`."""
        return cls(lambda: folder)

    def folder(self) -> Path:
        """The entry's folder in the cache (waits until the entry is committed)."""
        return self._folder()

    def path(self, name: str) -> Path:
        """The file `name` of the entry (waits until the entry is committed)."""
        return self._folder() / name

    def held(self, name: str) -> Any | None:
        """The in-memory value of file `name`, or None when only the file has it."""
        return self._held.get(name)

    def read(self, name: str, load: Callable[[Path], T]) -> T:
        """The value of file `name`: held in memory, else `load(path)`."""
        value = self._held.get(name)
        return value if value is not None else load(self.path(name))

    def has(self, name: str) -> bool:
        """Whether the output has a file `name`."""
        return name in self._held or self.path(name).is_file()

    def release(self) -> None:
        """Drop the held values (the files stay)."""
        self._held.clear()


class RunContext(Protocol):
    """What an operation may use while it runs."""

    workdir: Path

    def step(self, done: int, total: int) -> None:
        """Report progress; raises RenderCancelled when the render was cancelled."""

    def keep(self, name: str, value: Any, write: Callable[[Path], None]) -> None:
        """Output file `name`: later nodes get `value` in memory, and `write(path)` puts it in the
        cache entry in the background (`value` must not change afterwards)."""


OpFunction = Callable[["Node", "dict[str, NodeOutput]", RunContext], None]


@dataclass(frozen=True)
class Operation:
    """A named, versioned function from a node's inputs to files in its work folder.

    Bump `version` whenever the output for the same inputs changes. `holds_inputs=False` says the
    operation reads its inputs' small files only, so their large held values need not wait for it.
    `background=True` runs it beside the main work (CPU work that need not wait for the GPU).
    """

    name: str
    version: int
    run: OpFunction
    holds_inputs: bool = True
    background: bool = False


_REGISTRY: dict[str, Operation] = {}


def register(
    name: str, version: int, holds_inputs: bool = True, background: bool = False
) -> Callable[[OpFunction], OpFunction]:
    """Decorator that registers an operation under `name` (see `Operation`)."""

    def decorate(function: OpFunction) -> OpFunction:
        _REGISTRY[name] = Operation(name, version, function, holds_inputs, background)
        return function

    return decorate


_MODULES: dict[str, str] = {}


def operations_in(prefix: str, module: str) -> None:
    """Declare that the operations named `prefix...` are registered by `module`, which `get_operation`
    imports on first use (so heavy modules such as a model family's load only when a node needs them)."""
    _MODULES[prefix] = module


def get_operation(name: str) -> Operation:
    """The operation registered under `name`, importing the module that defines it on first use."""
    if name not in _REGISTRY:
        for prefix, module in _MODULES.items():
            if name.startswith(prefix):
                importlib.import_module(module)
    return _REGISTRY[name]
