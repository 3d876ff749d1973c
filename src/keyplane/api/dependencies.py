"""Request -> services, and request -> authenticated caller."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from keyplane.core.grant import KeyState
from keyplane.core.paths import VERIFY_PATH, WHOAMI_PATH
from keyplane.core.scopes import grants
from keyplane.http.authentication import check_request_key, missing_scope
from keyplane.http.services import services_of
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services


async def no_store(response: Response) -> None:
    """API answers can hold a key (create, roll) or key metadata: keep them out of caches.

    Async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
    a hop that cost more than the rest of a whoami (docs/performance.md)."""
    response.headers["Cache-Control"] = "no-store"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The key that authenticated this request, and the caller it acts as."""

    key: KeyState
    caller: Caller


#: Declared for the OpenAPI document only (the "Authorize" button of /docs);
#: credentials are read by ``key_from_headers``, which also takes ``apiKey``.
_BEARER_SCHEME = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
_HEADER_SCHEME = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")


async def authenticate(
    request: Request,
    response: Response,
    _bearer: Annotated[object, Security(_BEARER_SCHEME)],
    _header: Annotated[object, Security(_HEADER_SCHEME)],
) -> Authenticated:
    """Verify the request's key; 400 if it is in the URL, 401 if absent or unusable, 403 for IP,
    429 over its rate limit or quota."""
    services = services_of(request)
    peer = request.client.host if request.client else None
    auth, headers = await check_key(
        services, request.url.path, request.url.query, request.headers, peer
    )
    if headers:
        response.headers.update(headers)
    return auth


async def check_key(
    services: Services, path: str, query: str, headers: Mapping[str, str], peer: str | None
) -> tuple[Authenticated, dict[str, str]]:
    """What :func:`authenticate` does, without a framework: the FastAPI dependency and the
    pure-ASGI hot path (``api/hotpath.py``) both call it. ``headers`` must be looked up by
    lowercase name. Returns the caller and the RateLimit headers to answer with."""
    settings = services.settings
    checked = await check_request_key(
        services.verifier,
        failures=services.failed_keys,
        key_format=settings.key_format,
        trusted_proxies=settings.trusted_proxies,
        path=path,
        query=query,
        headers=headers,
        peer=peer,
        check_url=bool(query) or path not in _PATHS_WITHOUT_KEYS,
    )
    key, ip = checked.key, checked.client_ip
    actor = Actor(f"key:{key.key_id}", str(ip) if ip is not None else None, checked.user_agent)
    return Authenticated(key, Caller(key.organization_id, key.scopes, actor)), checked.limit_headers


#: Paths that cannot hold a key, so checking them (a regular expression) is skipped.
_PATHS_WITHOUT_KEYS = frozenset({WHOAMI_PATH, VERIFY_PATH})


def check_scope(caller: Caller, scope: str) -> None:
    if not grants(caller.scopes, scope):
        raise missing_scope(scope)


def require(scope: str) -> Any:
    """``Depends`` on a key that authenticates and holds ``scope``; it yields the caller.

    Use as ``caller: Annotated[Caller, require(scopes.KEYS_READ)]``.
    """

    async def dependency(auth: Annotated[Authenticated, Depends(authenticate)]) -> Caller:
        check_scope(auth.caller, scope)
        return auth.caller

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return Depends(dependency)
