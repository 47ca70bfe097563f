"""Loaded models of every family in this process, kept across nodes and renders.

Families load their components through `MODELS`, keyed by where each comes from, so components shared
by several profiles load once. Large models (transformers) stay loaded while the GPU has room; loading
another that would not leave working memory free first frees the large models already loaded (of any
family), with the models that came with them (their `group`, e.g. a checkpoint's own text connectors).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from scenekit.runtime import memory


@dataclass
class _Entry:
    model: Any
    role: str
    large: bool
    group: Hashable | None


class ModelCache:
    """Models by key, with the role each plays (`transformer`, `text_encoder`, ...)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(
        self,
        key: Hashable,
        load: Callable[[], Any],
        *,
        role: str = "component",
        large: bool = False,
        group: Hashable | None = None,
    ) -> Any:
        """The model under `key`, loaded by `load()` the first time."""
        if key not in self._entries:
            self._entries[key] = _Entry(load(), role, large, group)
        return self._entries[key].model

    def loaded(self, role: str) -> list[Any]:
        """The loaded models playing `role`."""
        return [entry.model for entry in self._entries.values() if entry.role == role]

    def release(self, role: str) -> None:
        """Free every model playing `role` that holds GPU memory (e.g. the text encoders once prompts are
        encoded); streamed models hold none and stay loaded for the next clip."""
        self._drop(
            [key for key, entry in self._entries.items() if entry.role == role and not memory.is_streamed(entry.model)]
        )

    def make_room(self, needed: int, device: str, group: Hashable | None = None) -> None:
        """Free the large models (and what came with them, except `group`'s) when `device` lacks room for
        `needed` bytes plus working memory."""
        free = memory.free_gpu_bytes(device)  # looked up on the module: one place to emulate a smaller GPU
        if free is None or free >= needed + memory.WORKING_MEMORY_BYTES:
            return
        freed = {entry.group for entry in self._entries.values() if entry.large} - {None, group}
        self._drop([key for key, entry in self._entries.items() if entry.large or entry.group in freed])

    def clear(self) -> None:
        """Free everything."""
        self._drop(list(self._entries))

    def _drop(self, keys: list[Hashable]) -> None:
        for key in keys:
            del self._entries[key]
        if keys:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


MODELS = ModelCache()
"""The models of this process, for every family."""
