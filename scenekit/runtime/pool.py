"""Loaded models of every family in this process, kept across nodes and renders.

Families load their components through `MODELS`, keyed by where each comes from, so components shared
by several profiles load once. Large models (transformers) stay loaded while the GPU has room; loading
another that would not leave working memory free first frees the large models already loaded (of any
family), with the models that came with them (their `group`, e.g. a checkpoint's own text connectors).

The models are kept per **slot**: a thread that runs renders on its own GPU (a server worker) binds its
slot with `MODELS.bound(slot)`, so each GPU keeps its own models warm and frees only its own; every other
thread (a command's render, a Ray actor) shares the default slot. Each slot has its own lock, so one GPU's
worker finds its models without waiting for another's; loading itself is one at a time in the process, as
loading changes process-wide state (transformers sets torch's default dtype while it builds a model,
accelerate's `init_empty_weights` patches `nn.Module` for every thread), so two loads side by side would
corrupt each other.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from scenekit.runtime import memory


@dataclass
class _Entry:
    model: Any
    role: str
    large: bool
    group: Hashable | None


@dataclass
class _Slot:
    entries: dict[Hashable, _Entry] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)  # reentrant: a load may look up another model


class ModelCache:
    """Models by key, with the role each plays (`transformer`, `text_encoder`, ...), in the calling thread's slot."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, _Slot] = {}
        self._lock = threading.Lock()  # guards `_slots`
        self._loading = threading.RLock()  # one load at a time in the process (a load may look up another model)
        self._thread = threading.local()

    @contextmanager
    def bound(self, slot: Hashable) -> Iterator[None]:
        """Models this thread loads, finds and frees in the block are `slot`'s (e.g. a worker's GPU), apart
        from every other slot's; they stay loaded for the next time the slot is bound."""
        previous = getattr(self._thread, "slot", None)
        self._thread.slot = slot
        try:
            yield
        finally:
            self._thread.slot = previous

    def _slot(self) -> _Slot:
        name = getattr(self._thread, "slot", None)
        slot = self._slots.get(name)
        if slot is None:
            with self._lock:
                slot = self._slots.setdefault(name, _Slot())
        return slot

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slot().entries

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
        slot = self._slot()
        with slot.lock:
            if key not in slot.entries:
                with self._loading:
                    slot.entries[key] = _Entry(load(), role, large, group)
            return slot.entries[key].model

    def loaded(self, role: str) -> list[Any]:
        """The loaded models playing `role`."""
        slot = self._slot()
        with slot.lock:
            return [entry.model for entry in slot.entries.values() if entry.role == role]

    def release(self, role: str) -> None:
        """Free every model playing `role` that holds GPU memory (e.g. the text encoders once prompts are
        encoded); streamed models hold none and stay loaded for the next clip."""
        slot = self._slot()
        with slot.lock:
            self._drop(
                slot,
                [
                    key
                    for key, entry in slot.entries.items()
                    if entry.role == role and not memory.is_streamed(entry.model)
                ],
            )

    def make_room(self, needed: int, device: str, group: Hashable | None = None) -> None:
        """Free the large models (and what came with them, except `group`'s) when `device` lacks room for
        `needed` bytes plus working memory."""
        free = memory.free_gpu_bytes(device)  # looked up on the module: one place to emulate a smaller GPU
        if free is None or free >= needed + memory.WORKING_MEMORY_BYTES:
            return
        slot = self._slot()
        with slot.lock:
            freed = {entry.group for entry in slot.entries.values() if entry.large} - {None, group}
            self._drop(slot, [key for key, entry in slot.entries.items() if entry.large or entry.group in freed])

    def clear(self) -> None:
        """Free everything (of this thread's slot)."""
        slot = self._slot()
        with slot.lock:
            self._drop(slot, list(slot.entries))

    @staticmethod
    def _drop(slot: _Slot, keys: list[Hashable]) -> None:
        for key in keys:
            del slot.entries[key]
        if keys:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


MODELS = ModelCache()
"""The models of this process, for every family, by slot."""
