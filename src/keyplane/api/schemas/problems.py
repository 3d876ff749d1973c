"""Error answers (RFC 9457 problem details) as the OpenAPI document describes them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ProblemOut(BaseModel):
    """An error answer (``application/problem+json``); ``code`` is stable, ``detail`` is prose."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str | None = None


_PROBLEM_REASONS: dict[int, str] = {
    400: "Malformed request (bad JSON, a key in the URL)",
    401: "No usable credential",
    403: "The credential may not do this (scope, IP allowlist, role)",
    404: "No such object in the caller's organization",
    409: "The object's state forbids the change",
    413: "The request body is too large",
    422: "The request is well formed but its values are not acceptable",
    429: "Too many failed attempts from this address; see Retry-After",
    431: "The request headers are too large",
    503: "The database is unavailable; retry after Retry-After",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem answers (default: every one the API gives)."""
    schema = {"$ref": "#/components/schemas/ProblemOut"}
    return {
        status: {
            "model": ProblemOut,
            "description": _PROBLEM_REASONS[status],
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses or tuple(_PROBLEM_REASONS)
    }
