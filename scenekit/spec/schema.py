"""The JSON Schema of scene specs, generated from the pydantic models (editors use it for completion)."""

from __future__ import annotations

import json

from scenekit.spec.models import SceneSpec

SCHEMA_ID = "https://scenekit.dev/schemas/scene.schema.json"


def schema_text() -> str:
    """The schema as the text of `schemas/scene.schema.json`."""
    schema = SceneSpec.model_json_schema(by_alias=True)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
