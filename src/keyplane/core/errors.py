"""Keyplane's exception hierarchy.

    KeyplaneError             never raised directly
    ├── MalformedKey          not a well-formed key (prefix, length, alphabet, checksum)
    ├── KeyInURL              a request carried a key in its URL (path or query string)
    ├── InvalidInput          a value a caller supplied is not acceptable (scope, CIDR, ...)
    ├── ObjectNotFound        no such object in the caller's organization
    ├── StateConflict         the object's state forbids the change (a revoked key)
    ├── AuthenticationFailed  the credential identifies no usable key (carries the code)
    ├── NotPermitted          the key is valid but may not do this (carries the code)
    ├── LimitExceeded         the key is valid but over its rate limit or usage quota
    ├── TooManyAttempts       too many failed attempts from a source; carries retry_after
    └── ReauthenticationRequired  a sensitive change and the sign-in is too old (sudo mode)

The names differ from the SDK's (``keyplane.client.errors``: ``NotFound``,
``Conflict``, ``PermissionDenied``, raised for the server's *answers*), so a
module never means one by the other's name; the SDK's errors derive from
:class:`KeyplaneError` too, so ``except keyplane.KeyplaneError`` catches both.

Messages never contain a secret: callers pass hints and ids, never key values.

**Each class knows how it is answered**: its HTTP ``status``, its problem type
(``problem_type``, the slug after ``urn:keyplane:problem:``) and its ``code``
(an :class:`ErrorCode`, or the grant code an instance carries), plus
:meth:`~KeyplaneError.problem_extra` and :meth:`~KeyplaneError.problem_headers`
where an answer says more. Every face renders from these attributes
(``http/problems.py`` ``problem_for`` for the API and the middleware, the
console's error pages, the IonQ surface's shape); none keeps a table of its
own. A class with a 5xx status is answered as an internal error, without its
message. To add an error: a subclass with these attributes, nothing else.
"""

from __future__ import annotations

import math
import time
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """The ``code`` of a problem answer that is not a grant code (``core.grant.GrantCode``)."""

    INVALID_INPUT = "INVALID_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    KEY_IN_URL = "KEY_IN_URL"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    JOB_LIMIT = "JOB_LIMIT"
    REAUTHENTICATION_REQUIRED = "REAUTHENTICATION_REQUIRED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class KeyplaneError(Exception):
    """Base class of every error Keyplane raises on purpose (a 500 unless a subclass
    says otherwise: an error nobody gave an answer to is a bug)."""

    status: int = 500
    problem_type: str = "internal-error"
    code: str | None = ErrorCode.INTERNAL_ERROR

    def problem_detail(self) -> str:
        """The sentence the answer gives (never a secret)."""
        return str(self)

    def problem_extra(self) -> dict[str, Any]:
        """Members of the problem body besides type, title, status, detail and code."""
        return {}

    def problem_headers(self) -> dict[str, str]:
        """Headers the answer carries."""
        return {}


class MalformedKey(KeyplaneError):
    """The string is not a well-formed Keyplane key.

    The ``reason`` says which rule it broke; the offending value is never kept.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a valid API key: {reason}")
        self.reason = reason


class KeyInURL(KeyplaneError):
    """A request sent a key in its URL (path or query string)."""

    status = 400
    problem_type = "key-in-url"
    code = ErrorCode.KEY_IN_URL


class InvalidInput(KeyplaneError):
    """A caller-supplied value is not acceptable; ``field`` names it."""

    status = 422
    problem_type = "invalid-input"
    code = ErrorCode.INVALID_INPUT

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def problem_extra(self) -> dict[str, Any]:
        return {"field": self.field} if self.field else {}


class ObjectNotFound(KeyplaneError):
    """The object does not exist, or exists in an organization the caller cannot see."""

    status = 404
    problem_type = "not-found"
    code = ErrorCode.NOT_FOUND

    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")
        self.kind = kind
        self.identifier = identifier

    def problem_detail(self) -> str:
        from keyplane.core.ids import is_id  # here: core.ids imports core.keys, which imports this

        # Quote the id only when it is one of ours: the answer echoes nothing else.
        which = f"id {self.identifier!r}" if is_id(self.identifier) else "that id"
        return f"No {self.kind} with {which}."


class StateConflict(KeyplaneError):
    """The object's current state does not allow the requested change."""

    status = 409
    problem_type = "conflict"
    code = ErrorCode.CONFLICT


class AuthenticationFailed(KeyplaneError):
    """The credential does not identify a usable key. ``code`` is a grant code."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        missing = code == "MISSING_KEY"
        self.problem_type = "missing-api-key" if missing else "invalid-api-key"

    def problem_headers(self) -> dict[str, str]:
        realm = 'Bearer realm="keyplane"'
        return {
            "WWW-Authenticate": realm
            if self.code == "MISSING_KEY"
            else f'{realm}, error="invalid_token"'
        }


class NotPermitted(KeyplaneError):
    """The key is valid but not allowed to do this. ``code`` is a grant code."""

    status = 403

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.problem_type = "forbidden-ip" if code == "FORBIDDEN" else "insufficient-scope"


class LimitExceeded(KeyplaneError):
    """The key is over its rate limit (RATE_LIMITED) or its quota (USAGE_EXCEEDED).

    ``reset_at`` is the Unix time the limit frees up again; None if it never does.
    """

    status = 429

    def __init__(
        self, code: str, message: str, *, limit: int, reset_at: float | None, window: int | None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.limit = limit
        self.reset_at = reset_at
        self.window = window
        self.problem_type = "rate-limited" if code == "RATE_LIMITED" else "usage-exceeded"

    def problem_headers(self) -> dict[str, str]:
        headers = ratelimit_headers(self.limit, 0, self.reset_at, self.window)
        if self.reset_at is not None:  # a quota that never refills: retrying will not help
            headers["Retry-After"] = str(max(1, math.ceil(self.reset_at - time.time())))
        return headers


class TooManyAttempts(KeyplaneError):
    """Too many failed attempts (keys or sign-ins); ``retry_after`` is the wait in seconds."""

    status = 429
    problem_type = "too-many-attempts"

    def __init__(self, retry_after: int, message: str | None = None, *, code: str) -> None:
        super().__init__(message or f"too many failed attempts; try again in {retry_after} s")
        self.retry_after = retry_after
        self.code = code

    def problem_extra(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}

    def problem_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


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


class ReauthenticationRequired(KeyplaneError):
    """A sensitive change (management keys, roles, second factors, policies) asked of
    a person whose last password or factor entry is older than the sudo timeout."""

    status = 403
    problem_type = "reauthentication-required"
    code = ErrorCode.REAUTHENTICATION_REQUIRED

    def __init__(self, action: str) -> None:
        super().__init__(f"confirm it is you again to {action}")
        self.action = action
