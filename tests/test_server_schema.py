"""Property-based tests of the HTTP API against its own OpenAPI document (schemathesis), in-process (ASGI, no
network), with the token: for every operation, requests generated from the document (and, for JSON bodies,
requests that break it) get no 5xx and answers as the document describes them.

The runs are derandomized (the same examples every time) and bounded to a few seconds; set
SCENEKIT_FUZZ_EXAMPLES to run more, e.g. 500, with fresh random examples (and shrinking of what fails).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[test]')")
pytest.importorskip("fastapi")
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from scenekit.server.app import ServerConfig, create_app

TOKEN = "schema-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_EXAMPLES = int(os.environ.get("SCENEKIT_FUZZ_EXAMPLES", "0"))
PROPERTIES = settings(
    max_examples=_EXAMPLES or 10,
    deadline=5000,  # ms per request: a hang fails, a busy machine does not
    derandomize=not _EXAMPLES,
    database=None,
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if _EXAMPLES else [])],
    suppress_health_check=list(HealthCheck),
)
CONFIG = {
    # A schema-valid body can still be an invalid spec (its YAML text, `size`, `duration`, ...: the spec
    # language is checked beyond JSON Schema), or name a file or render that is not there: 422 with located
    # errors, or 404, is the documented answer to it.
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}},
}
ISSUE_KEYS = {"file", "line", "column", "field", "message", "hint"}


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenApiSchema]:
    """The API's OpenAPI document, loaded from the app serving a scratch project; its render queue (the
    app's lifespan, started by schemathesis) stops at the end."""
    monkeypatch.delenv("SCENEKIT_CACHE_DIR", raising=False)
    (tmp_path / "project").mkdir()
    app = create_app(ServerConfig(project=tmp_path / "project", token=TOKEN))
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG))
    finally:
        shutdown_lifespans()


def check_error_body(status: int, body: Any) -> None:
    """A 400 or 404 is `{detail}`; a 422 is `{detail, errors}`, each error located (file, line, column, field,
    message, hint)."""
    assert isinstance(body, dict) and isinstance(body.get("detail"), str), body
    if status == 422:
        assert set(body) == {"detail", "errors"} and body["errors"], body
        assert all(isinstance(e, dict) and set(e) == ISSUE_KEYS for e in body["errors"]), body
    else:
        assert set(body) == {"detail"}, body


def check_case(case: Any) -> None:
    """One generated request: every check schemathesis has for it (5xx, status codes, content types,
    response schemas and headers, positive data accepted, negative data rejected)."""
    response = case.call(headers=AUTH)
    if response.status_code >= 400:
        check_error_body(response.status_code, response.json())
    case.validate_response(response, headers=AUTH)


def modes(operation: Any) -> list[GenerationMode]:
    """Positive data for every operation; negative data too where there is something to break (a JSON body:
    path parameters are plain strings, so no request breaks them)."""
    has_json = any(body.media_type == "application/json" for body in operation.body)
    return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if has_json else [GenerationMode.POSITIVE]


def test_every_operation_answers_without_5xx_and_as_documented(api: OpenApiSchema):
    """Each operation in turn, every finding collected (schemathesis's own pytest integration, `from_fixture`,
    fails on pytest 9: it sets the item's `_nodeid`)."""
    failures = []
    operations = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the document describes in a way schemathesis cannot use
        operations.append(result.ok())
    assert {op.path for op in operations} >= {"/renders", "/renders/{render_id}/video", "/uploads", "/stitch"}
    for operation in operations:
        for mode in modes(operation):

            @PROPERTIES
            @given(case=operation.as_strategy(mode))
            def run(case: Any) -> None:
                check_case(case)

            try:
                run()
            except Unsatisfiable:
                pass  # no request breaks this operation's document
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports its findings as a group
                found = "\n".join([str(exc), *getattr(exc, "__notes__", [])])  # the notes hold the request
                failures.append(f"{operation.label} ({mode.value} data): {found}")
    assert not failures, "\n\n".join(failures)


def test_the_document_describes_the_error_answers(api: OpenApiSchema):
    checks = [status_code_conformance, response_schema_conformance]
    missing = api["/renders/{render_id}"]["GET"].Case(path_parameters={"render_id": "0123456789abcdef"})
    assert missing.call(headers=AUTH).status_code == 404
    missing.call_and_validate(headers=AUTH, checks=checks)
    invalid = api["/renders"]["POST"].Case(body={"spec": "scenekit: 1\nclips: []\n"}, media_type="application/json")
    assert invalid.call(headers=AUTH).status_code == 422
    invalid.call_and_validate(headers=AUTH, checks=checks)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"path": "a" * 300}, id="path-name-too-long"),
        pytest.param({"prompt": "x", "save_as": "a" * 300 + ".yaml"}, id="save-as-name-too-long"),
        pytest.param({"prompt": "x", "save_as": "a\0.yaml"}, id="save-as-nul"),
    ],
)
def test_paths_the_filesystem_refuses_are_errors_not_500(api: OpenApiSchema, body: dict[str, Any]):
    """Requests the property run found with more examples (SCENEKIT_FUZZ_EXAMPLES=200): schema-valid, but
    naming a file the OS refuses to look up."""
    case = api["/renders" if "path" in body else "/generate"]["POST"].Case(body=body, media_type="application/json")
    response = case.call(headers=AUTH)
    check_error_body(response.status_code, response.json())
    assert response.status_code in (404, 422)
