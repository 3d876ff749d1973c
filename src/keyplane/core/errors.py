"""Keyplane's exception hierarchy.

    KeyplaneError             never raised directly
    ├── MalformedKey          not a well-formed key (prefix, length, alphabet, checksum)
    ├── KeyInURL              a request carried a key in its URL (path or query string)
    ├── InvalidInput          a value a caller supplied is not acceptable (scope, CIDR, ...)
    ├── NotFound              no such object in the caller's organization
    ├── Conflict              the object's state forbids the change (a revoked key)
    ├── AuthenticationFailed  the credential identifies no usable key (carries the code)
    ├── PermissionDenied      the key is valid but may not do this (carries the code)
    └── LimitExceeded         the key is valid but over its rate limit or usage quota
    └── TooManyAttempts       too many failed attempts from a source; carries retry_after

Messages never contain a secret: callers pass hints and ids, never key values.
"""

from __future__ import annotations


class KeyplaneError(Exception):
    """Base class of every error Keyplane raises on purpose."""


class MalformedKey(KeyplaneError):
    """The string is not a well-formed Keyplane key.

    The ``reason`` says which rule it broke; the offending value is never kept.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a valid API key: {reason}")
        self.reason = reason


class KeyInURL(KeyplaneError):
    """A request sent a key in its URL (path or query string)."""


class InvalidInput(KeyplaneError):
    """A caller-supplied value is not acceptable; ``field`` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(KeyplaneError):
    """The object does not exist, or exists in an organization the caller cannot see."""

    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")
        self.kind = kind
        self.identifier = identifier


class Conflict(KeyplaneError):
    """The object's current state does not allow the requested change."""


class AuthenticationFailed(KeyplaneError):
    """The credential does not identify a usable key. ``code`` is a grant code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PermissionDenied(KeyplaneError):
    """The key is valid but not allowed to do this. ``code`` is a grant code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LimitExceeded(KeyplaneError):
    """The key is over its rate limit (RATE_LIMITED) or its quota (USAGE_EXCEEDED).

    ``reset_at`` is the Unix time the limit frees up again; None if it never does.
    """

    def __init__(
        self, code: str, message: str, *, limit: int, reset_at: float | None, window: int | None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.limit = limit
        self.reset_at = reset_at
        self.window = window


class TooManyAttempts(KeyplaneError):
    """Too many failed attempts (keys or sign-ins); ``retry_after`` is the wait in seconds."""

    def __init__(self, retry_after: int, message: str | None = None, *, code: str) -> None:
        super().__init__(message or f"too many failed attempts; try again in {retry_after} s")
        self.retry_after = retry_after
        self.code = code
