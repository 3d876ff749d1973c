"""RFC 9457 problem details, and the one place that maps exceptions to them."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

from starlette.responses import JSONResponse

from keyplane.core.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    KeyInURL,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    TooManyAttempts,
)
from keyplane.core.grant import GrantCode
from keyplane.core.ids import is_id
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


def ratelimit_headers(
    limit: int, remaining: int, reset_at: float | None, window: int | None
) -> dict[str, str]:
    """``RateLimit-Limit``, ``-Remaining``, ``-Reset`` (seconds from now) and ``-Policy``,
    as in the IETF draft draft-ietf-httpapi-ratelimit-headers."""
    headers = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(max(0, remaining))}
    if reset_at is not None:
        headers["RateLimit-Reset"] = str(max(0, math.ceil(reset_at - time.time())))
    if window is not None:
        headers["RateLimit-Policy"] = f"{limit};w={window}"
    return headers


def problem_for(error: Exception) -> Problem:
    """The problem response for an exception; anything unexpected is a bare 500."""
    if isinstance(error, AuthenticationFailed):
        challenge = REALM if error.code == "MISSING_KEY" else f'{REALM}, error="invalid_token"'
        return Problem(
            401,
            "missing-api-key" if error.code == "MISSING_KEY" else "invalid-api-key",
            str(error),
            {"code": error.code},
            {"WWW-Authenticate": challenge},
        )
    if isinstance(error, PermissionDenied):
        slug = "forbidden-ip" if error.code == GrantCode.FORBIDDEN else "insufficient-scope"
        return Problem(403, slug, str(error), {"code": error.code})
    if isinstance(error, LimitExceeded):
        headers = ratelimit_headers(error.limit, 0, error.reset_at, error.window)
        if error.reset_at is not None:  # a quota that never refills: retrying will not help
            headers["Retry-After"] = str(max(1, math.ceil(error.reset_at - time.time())))
        slug = "rate-limited" if error.code == GrantCode.RATE_LIMITED else "usage-exceeded"
        return Problem(429, slug, str(error), {"code": error.code}, headers)
    if isinstance(error, TooManyAttempts):
        return Problem(
            429,
            "too-many-attempts",
            str(error),
            {"code": error.code, "retry_after": error.retry_after},
            {"Retry-After": str(error.retry_after)},
        )
    if isinstance(error, KeyInURL):
        return Problem(400, "key-in-url", str(error), {"code": "KEY_IN_URL"})
    if isinstance(error, NotFound):
        which = f"id {error.identifier!r}" if is_id(error.identifier) else "that id"
        return Problem(404, "not-found", f"No {error.kind} with {which}.", {"code": "NOT_FOUND"})
    if isinstance(error, Conflict):
        return Problem(409, "conflict", str(error), {"code": "CONFLICT"})
    if isinstance(error, InvalidInput):
        extra: dict[str, Any] = {"code": "INVALID_INPUT"}
        if error.field:
            extra["field"] = error.field
        return Problem(422, "invalid-input", str(error), extra)
    return Problem(
        500, "internal-error", "Something went wrong on our side.", {"code": "INTERNAL_ERROR"}
    )
