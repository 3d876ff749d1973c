"""The one way a face reaches :class:`~keyplane.service.services.Services`.

The host app (``keyplane.app``) holds the process's services on
``app.state.services``: set at start-up, or by whoever built the app with
services of their own (the tests). An app mounted inside it (the console, the
``/v0.4`` app) holds a provider instead, with :func:`attach`, that returns the
host's services when a request comes. Routes, dependencies, error handlers and
the hot path all read them through :func:`services_of` (or
:func:`services_or_none` where no services is a normal state: before start-up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import Depends
from starlette.requests import HTTPConnection

from keyplane.service.services import Services

_PROVIDER: Final = "services_provider"
_MISSING: Final = object()


def attach(app: Any, provider: Callable[[], Services | None]) -> None:
    """Let ``app`` (mounted in the host app) reach the host's services through ``provider``."""
    setattr(app.state, _PROVIDER, provider)


def services_or_none(app: Any) -> Services | None:
    """The services of ``app`` (the host's, for a mounted app); None before start-up."""
    # The host's own attribute first: on the hot path a missing attribute costs
    # an exception inside Starlette's State (about 4 µs), a present one 1 µs.
    state = app.state
    services: Services | object | None = getattr(state, "services", _MISSING)
    if services is not _MISSING:
        return services  # type: ignore[return-value]
    provider: Callable[[], Services | None] | None = getattr(state, _PROVIDER, None)
    return provider() if provider is not None else None


def services_of(connection: HTTPConnection) -> Services:
    """The services a request is served with (a FastAPI dependency too)."""
    services = services_or_none(connection.app)
    if services is None:  # pragma: no cover - requests arrive only after start-up
        raise RuntimeError("the app has not started: it has no services yet")
    return services


ServicesDep = Annotated[Services, Depends(services_of)]
