"""RFC 9457 problem details, and the one place that maps exceptions to them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

from starlette.responses import JSONResponse

from keyplane.core.errors import KeyplaneError
from keyplane.core.keys import KeyFormat

PROBLEM_JSON: Final = "application/problem+json"
TYPE_BASE: Final = "urn:keyplane:problem:"
REALM: Final = 'Bearer realm="keyplane"'


@dataclass(frozen=True)
class Problem:
    status: int
    slug: str
    detail: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase

    def body(self) -> dict[str, Any]:
        return {
            "type": f"{TYPE_BASE}{self.slug}" if self.slug else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def redacted(self, key_format: KeyFormat) -> Problem:
        """This problem with any key in its detail replaced by its hint.

        Details quote what the caller sent ("'x' is not a scope"); when what
        they sent is a key, the answer must not carry it back.
        """
        detail = key_format.redact(self.detail)
        if detail == self.detail:
            return self
        return Problem(self.status, self.slug, detail, self.extra, self.headers)

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body(),
            status_code=self.status,
            media_type=PROBLEM_JSON,
            headers={"Cache-Control": "no-store", **self.headers},
        )


def problem_for(error: Exception) -> Problem:
    """The problem response for an exception, from the attributes its class carries
    (``core.errors``); anything unexpected, or an error whose class says 5xx, is a
    bare 500 that tells nothing."""
    if not isinstance(error, KeyplaneError) or error.status >= 500:
        return Problem(
            500, "internal-error", "Something went wrong on our side.", {"code": "INTERNAL_ERROR"}
        )
    return Problem(
        error.status,
        error.problem_type,
        error.problem_detail(),
        {"code": error.code, **error.problem_extra()},
        error.problem_headers(),
    )
