"""The JSON Schemas of scene specs and of the files they include, generated from the pydantic models
(editors use them for completion and inline checks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scenekit.spec.models import Clip, SceneSpec

SCHEMA_ID = "https://scenekit.dev/schemas/scene.schema.json"
INCLUDE_SCHEMA_ID = "https://scenekit.dev/schemas/include.schema.json"
INCLUDE_SCHEMA_FILE = "include.schema.json"


def schema_text() -> str:
    """The schema of a spec, as the text of `schemas/scene.schema.json`."""
    return _text(SCHEMA_ID, _scene_schema())


def include_schema_text() -> str:
    """The schema of an included file, as the text of `schemas/include.schema.json`: a spec's keys, none
    of them required (an include such as `shared/style.yaml` may hold only `vars` and `defaults`)."""
    schema = _scene_schema()
    schema.pop("required", None)
    schema["properties"]["clips"].pop("minItems", None)
    schema["title"] = "SceneInclude"
    schema["description"] = "A file a spec includes (`include: [FILE]`): any keys of a spec, none required."
    return _text(INCLUDE_SCHEMA_ID, schema)


def schema_files(scene_schema: Path) -> dict[Path, str]:
    """Every schema file and its text: `scene_schema` and the include schema beside it."""
    return {scene_schema: schema_text(), scene_schema.with_name(INCLUDE_SCHEMA_FILE): include_schema_text()}


def _text(schema_id: str, schema: dict[str, Any]) -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def _scene_schema() -> dict[str, Any]:
    """pydantic's schema with clip entries told apart by `for` and loop clip templates checked for keys.

    pydantic writes the clip-or-loop union as `oneOf`, which editors can only report as "not valid under
    any of the given schemas" when one key is misspelt; `if`/`then`/`else` on `for` picks the one schema
    to check, so the editor names the unknown key, as `scenekit validate` does."""
    schema = SceneSpec.model_json_schema(by_alias=True)
    schema["properties"]["clips"]["items"] = {
        "if": {"type": "object", "required": ["for"]},
        "then": {"$ref": "#/$defs/ClipLoop"},
        "else": {"$ref": "#/$defs/Clip"},
    }
    schema["$defs"]["ClipLoop"]["properties"]["clip"] = _clip_template_schema(
        schema["$defs"]["ClipLoop"]["properties"]["clip"]
    )
    return schema


def _clip_template_schema(written: dict[str, Any]) -> dict[str, Any]:
    """A loop's `clip:`: a clip's keys (with their descriptions), any values, since any of them may be a
    template such as `id: "shot-{{ loop.index }}"` that becomes valid once rendered."""
    clip = Clip.model_json_schema(by_alias=True)
    keys = {
        name: {"description": field.get("description", field.get("title", ""))}
        for name, field in clip["properties"].items()
    }
    return {**written, "additionalProperties": False, "properties": keys}
