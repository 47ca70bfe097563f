"""The API's request bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SPEC_TEXT = 1024 * 1024  # the spec loader's own limit for a spec with its includes


class Options(BaseModel):
    """How to render, beside the spec: the `--model`, `--size` and `--var` of the command line."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, max_length=200, description="render every clip with this model profile")
    size: str | None = Field(default=None, max_length=40, description="render every clip at this WIDTHxHEIGHT")
    vars: dict[str, Any] = Field(default_factory=dict, description="template variables (override the spec's `vars`)")


class SpecRequest(Options):
    """A spec, as YAML text or as a path inside the project (exactly one of them), and options."""

    spec: str | None = Field(
        default=None, max_length=MAX_SPEC_TEXT, description="the spec's YAML; its paths are relative to the project"
    )
    path: str | None = Field(default=None, max_length=4096, description="a spec file, relative to the project")


class GenerateRequest(BaseModel):
    """One clip: builds a spec (returned) and renders it."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=20_000)
    duration: str = Field(default="5s", max_length=40, description="e.g. `5s`, `120f`")
    model: str | None = Field(default=None, max_length=200)
    size: str | None = Field(default=None, max_length=40, description="WIDTHxHEIGHT")
    fps: str | None = Field(default=None, max_length=40)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    image: str | None = Field(
        default=None, max_length=4096, description="conditioning image at frame 0: a project path (e.g. an upload's)"
    )
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    save_as: str | None = Field(
        default=None, max_length=4096, description="also save the built spec here (a new .yaml file in the project)"
    )


class StitchRequest(BaseModel):
    """Earlier renders' clips in order: builds a spec (returned) and renders it; the clips come from the cache."""

    model_config = ConfigDict(extra="forbid")
    renders: list[str] = Field(min_length=1, max_length=100)
    transition: Literal["cut", "crossfade", "fade"] = "cut"
    transition_duration: str = Field(default="0.5s", max_length=40)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    save_as: str | None = Field(default=None, max_length=4096)


class LocatedIssue(BaseModel):
    """One problem, located where it is: a spec's file, line, column and field (null when not in a file)."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    field: str | None = None
    message: str
    hint: str | None = None


class ErrorAnswer(BaseModel):
    """What every error answers: a summary, and for an invalid spec or request the located problems."""

    detail: str
    errors: list[LocatedIssue] = Field(default_factory=list)


ERROR_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorAnswer, "description": "a body that cannot be read (not UTF-8, not JSON)"},
    404: {"model": ErrorAnswer, "description": "no such render, or a path that is not a file in the project"},
    422: {"model": ErrorAnswer, "description": "an invalid spec or request: the located problems"},
    503: {
        "model": ErrorAnswer,
        "description": "the executor cannot take renders now (a Ray cluster that cannot be joined)",
    },
}
"""The error answers every operation may give, as the OpenAPI document describes them."""
