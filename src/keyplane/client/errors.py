"""Errors the SDK raises.

    KeyplaneError                 (keyplane.core.errors) base of everything Keyplane raises
    ├── MissingAPIKey             no key anywhere; the message says how to set KEYPLANE_API_KEY
    ├── TransportError            the server could not be reached, or the answer was cut off
    │   └── Timeout               no answer in time
    └── APIError                  the server answered an error (``status``, ``code``, ``detail``)
        ├── BadRequest            400 or 422: the request itself is wrong (``field`` when known)
        ├── InvalidAPIKey         401: the key is missing, unknown, revoked, disabled or expired
        ├── PermissionDenied      403: the key may not do this (scope, or client IP)
        ├── NotFound              404: no such project or key in your organization
        ├── Conflict              409: the object's state forbids the change
        ├── RateLimited           429: slow down; ``retry_after`` in seconds, when the server said
        └── ServerError           5xx: the server failed

No message, ``str`` or ``repr`` of these ever holds a key: they carry the key's
hint (``kp_...abcd``) and where it came from, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keyplane.core.errors import KeyplaneError


class MissingAPIKey(KeyplaneError):
    """No API key was given, in the environment, a ``.env`` file or the key store."""


class TransportError(KeyplaneError):
    """The request did not get an answer: connection refused, reset, DNS, TLS..."""


class Timeout(TransportError):
    """The server did not answer within the client's timeout."""


class APIError(KeyplaneError):
    """The server answered with an RFC 9457 problem (or at least an error status)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        detail: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
        self.problem: Mapping[str, Any] = dict(problem or {})

    @property
    def type(self) -> str | None:
        value = self.problem.get("type")
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, {str(self)!r})"


class BadRequest(APIError):
    """400 or 422: the server refused the request's content; ``field`` names the culprit."""

    @property
    def field(self) -> str | None:
        value = self.problem.get("field")
        return value if isinstance(value, str) else None


class InvalidAPIKey(APIError):
    """401: the key was not sent, or is unknown, revoked, disabled or expired (see ``code``)."""


class PermissionDenied(APIError):
    """403: the key is valid but may not do this (``INSUFFICIENT_SCOPE`` or ``FORBIDDEN``)."""


class NotFound(APIError):
    """404: no such object in your organization."""


class Conflict(APIError):
    """409: the object's state forbids the change (a revoked key, a taken name)."""


class RateLimited(APIError):
    """429: too many requests. ``retry_after`` is in seconds, or None if the server did not say."""

    def __init__(self, message: str, *, retry_after: float | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server (or a proxy in front of it) failed."""


__all__ = [
    "APIError",
    "BadRequest",
    "Conflict",
    "InvalidAPIKey",
    "KeyplaneError",
    "MissingAPIKey",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "Timeout",
    "TransportError",
]
