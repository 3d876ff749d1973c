"""Keyplane: a self-hostable API key platform.

``import keyplane`` loads nothing but this file. The SDK's names
(``keyplane.Client``, ``keyplane.AsyncClient``, the errors and models) and
``__version__`` (from ``keyplane/client/_version.py``) are loaded from
:mod:`keyplane.client` the first time one is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "APIError",
    "Allowance",
    "AsyncClient",
    "AuditEvent",
    "BadRequest",
    "Client",
    "Conflict",
    "CreatedKey",
    "DryRunGroup",
    "Event",
    "EventType",
    "InvalidAPIKey",
    "Key",
    "KeyCaller",
    "KeyCallers",
    "KeyPolicy",
    "KeyplaneError",
    "MissingAPIKey",
    "NotFound",
    "Page",
    "PermissionDenied",
    "PolicyDryRun",
    "Project",
    "Quota",
    "QuotaStatus",
    "RateLimit",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Timeout",
    "TouchedKey",
    "TransportError",
    "Usage",
    "UsageBucket",
    "VerifyResult",
    "WhoAmI",
    "__version__",
]
# The SDK's names: the same list as ``keyplane.client.__all__`` (less
# ``NOT_GIVEN``; tests/client/test_import_boundary.py checks they agree).
_CLIENT_NAMES = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from keyplane.client import (
        Allowance,
        APIError,
        AsyncClient,
        AuditEvent,
        BadRequest,
        Client,
        Conflict,
        CreatedKey,
        DryRunGroup,
        Event,
        EventType,
        InvalidAPIKey,
        Key,
        KeyCaller,
        KeyCallers,
        KeyplaneError,
        KeyPolicy,
        MissingAPIKey,
        NotFound,
        Page,
        PermissionDenied,
        PolicyDryRun,
        Project,
        Quota,
        QuotaStatus,
        RateLimit,
        RateLimited,
        RetryPolicy,
        ServerError,
        Timeout,
        TouchedKey,
        TransportError,
        Usage,
        UsageBucket,
        VerifyResult,
        WhoAmI,
    )
    from keyplane.client._version import __version__


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # One version, read once in client/_version.py (loading it loads the SDK).
        from keyplane.client._version import __version__

        globals()[name] = __version__
        return __version__
    if name in _CLIENT_NAMES:
        from keyplane import client

        value = getattr(client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keyplane' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_CLIENT_NAMES, "__version__"})
