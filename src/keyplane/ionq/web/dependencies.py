"""Request -> the key that authenticates it, with the scope the route needs."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request, Response

from keyplane.core.grant import GrantCode, KeyState
from keyplane.http.authentication import check_request_key, missing_scope
from keyplane.http.services import services_of
from keyplane.ionq.jobs.records import JobOwner


def require(scope: str | None) -> Any:
    """``Depends`` on a key that authenticates and holds ``scope`` (any valid key for None)."""

    async def dependency(request: Request, response: Response) -> KeyState:
        services = services_of(request)
        settings = services.settings
        checked = await check_request_key(
            services.verifier,
            failures=services.failed_keys,
            key_format=settings.key_format,
            trusted_proxies=settings.trusted_proxies,
            path=request.url.path,
            query=request.url.query,
            headers=request.headers,
            peer=request.client.host if request.client else None,
            required_scopes=(scope,) if scope else (),
            header_hint="Authorization: apiKey <key>",
        )
        if checked.code is GrantCode.INSUFFICIENT_SCOPE:
            raise missing_scope(scope)
        response.headers.update(checked.limit_headers)
        return checked.key

    dependency.__name__ = f"require_{(scope or 'key').replace(':', '_')}"
    return Depends(dependency)


def owner_of(key: KeyState) -> JobOwner:
    return JobOwner(key.organization_id, key.project_id, key.key_id)
