"""A node of the render DAG and its content key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from scenekit.spec.assets import Asset

KEY_SCHEME = 1


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, fractions as 'n/d' strings."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Fraction):
            return f"{obj.numerator}/{obj.denominator}"
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"cannot hash {type(obj).__name__} into a cache key")

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default, ensure_ascii=False)


@dataclass
class Node:
    """One step of a render: an operation on parameters, files and other nodes' outputs."""

    id: str
    op: str
    params: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)
    files: dict[str, Asset] = field(default_factory=dict)
    clip: str | None = None
    profile: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    """Run-time hints that are not part of the key, e.g. the folder the weights were found in, or
    `model`: the large model the node needs loaded (the executor runs nodes that share one together)."""

    def compute_key(self, op_version: int, input_keys: dict[str, str]) -> str:
        """Hash of what determines the output: op and version, parameters, file contents, profile, inputs.

        The node id, the clip id and where values came from in the spec are not part of it.
        """
        signature = {
            "scheme": KEY_SCHEME,
            "op": self.op,
            "op_version": op_version,
            "params": self.params,
            "files": {name: asset.sha256 for name, asset in self.files.items()},
            "profile": self.profile,
            "inputs": input_keys,
        }
        self.key = hashlib.sha256(canonical_json(signature).encode()).hexdigest()
        return self.key

    def record(self) -> dict[str, Any]:
        """What the manifest keeps of this node (to explain the next plan)."""
        return {
            "id": self.id,
            "op": self.op,
            "clip": self.clip,
            "key": self.key,
            "params": json.loads(canonical_json(self.params)),
            "files": {name: {"path": a.written, "sha256": a.sha256} for name, a in self.files.items()},
            "inputs": self.inputs,
            "profile": self.profile,
            "sources": self.sources,
        }
