"""Request -> the key that authenticates it, with the scope the route needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request

from keyplane.core.errors import PermissionDenied
from keyplane.core.grant import UNAUTHENTICATED_CODES, GrantCode, KeyState
from keyplane.http.client_ip import client_ip
from keyplane.http.credentials import key_from_headers, key_in_url
from keyplane.http.problems import KeyInURL, authentication_failed, missing_credentials
from keyplane.service.jobs import JobOwner
from keyplane.service.services import Services


def get_services(request: Request) -> Services:
    provider: Callable[[], Services | None] = request.app.state.services_provider
    services = provider()
    if services is None:  # pragma: no cover - the app always has services once started
        raise RuntimeError("the IonQ surface has no services")
    return services


def require(scope: str | None) -> Any:
    """``Depends`` on a key that authenticates and holds ``scope`` (any valid key for None)."""

    async def dependency(request: Request) -> KeyState:
        services = get_services(request)
        if key_in_url(request.url.path, request.url.query, services.settings.key_format):
            raise KeyInURL(
                "API keys are never accepted in the URL. Send the key in the "
                "'Authorization: apiKey <key>' header, and consider rolling it."
            )
        raw_key = key_from_headers(request.headers)
        if raw_key is None:
            raise missing_credentials()
        peer = request.client.host if request.client else None
        ip = client_ip(
            peer, request.headers.get("x-forwarded-for"), services.settings.trusted_proxies
        )
        decision = await services.verifier.verify_async(
            raw_key,
            required_scopes=(scope,) if scope else (),
            client_ip=ip,
            user_agent=request.headers.get("user-agent"),
        )
        if decision.code in UNAUTHENTICATED_CODES or decision.key is None:
            raise authentication_failed(decision.code)
        if decision.code is GrantCode.FORBIDDEN:
            raise PermissionDenied(
                GrantCode.FORBIDDEN, "The API key may not be used from this IP address."
            )
        if decision.code is GrantCode.INSUFFICIENT_SCOPE:
            raise PermissionDenied(
                GrantCode.INSUFFICIENT_SCOPE,
                f"The API key lacks the scope '{scope}' this call needs.",
            )
        return decision.key

    dependency.__name__ = f"require_{(scope or 'key').replace(':', '_')}"
    return Depends(dependency)


def owner_of(key: KeyState) -> JobOwner:
    return JobOwner(key.organization_id, key.project_id, key.key_id)
