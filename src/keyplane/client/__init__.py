"""The Python SDK: :class:`Client` and :class:`AsyncClient` for the Keyplane API.

It imports only :mod:`keyplane.core`, httpx and the standard library when
loaded (``keyring``, ``python-dotenv`` and ``platformdirs`` only when a key is
looked up), never the server's stack: a program that holds a key does not
load FastAPI, SQLAlchemy or the service layer. ``tests/client`` checks it.
"""

from __future__ import annotations

from keyplane.client._async import AsyncClient
from keyplane.client._http import RetryPolicy
from keyplane.client._sync import Client
from keyplane.client.errors import (
    APIError,
    BadRequest,
    Conflict,
    InvalidAPIKey,
    KeyplaneError,
    MissingAPIKey,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    Timeout,
    TransportError,
)
from keyplane.client.models import (
    Allowance,
    AuditEvent,
    CreatedKey,
    DryRunGroup,
    Event,
    EventType,
    Key,
    KeyCaller,
    KeyCallers,
    KeyPolicy,
    Page,
    PolicyDryRun,
    Project,
    Quota,
    QuotaStatus,
    RateLimit,
    TouchedKey,
    Usage,
    UsageBucket,
    VerifyResult,
    WhoAmI,
)
from keyplane.client.operations import NOT_GIVEN

__all__ = [
    "NOT_GIVEN",
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
]
