"""Request -> services, and request -> authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from keyplane.core.errors import PermissionDenied
from keyplane.core.grant import UNAUTHENTICATED_CODES, GrantCode, KeyState
from keyplane.core.network import IPAddress
from keyplane.core.scopes import grants
from keyplane.http.client_ip import client_ip
from keyplane.http.credentials import key_from_headers, key_in_url
from keyplane.http.problems import KeyInURL, authentication_failed, missing_credentials
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def no_store(response: Response) -> None:
    """API answers can hold a key (create, roll) or key metadata: keep them out of caches."""
    response.headers["Cache-Control"] = "no-store"


def request_ip(request: Request) -> IPAddress | None:
    services = get_services(request)
    peer = request.client.host if request.client else None
    return client_ip(
        peer, request.headers.get("x-forwarded-for"), services.settings.trusted_proxies
    )


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
    _bearer: Annotated[object, Security(_BEARER_SCHEME)],
    _header: Annotated[object, Security(_HEADER_SCHEME)],
) -> Authenticated:
    """Verify the request's key; 400 if it is in the URL, 401 if absent or unusable, 403 for IP."""
    services = get_services(request)
    if key_in_url(request.url.path, request.url.query, services.settings.key_format):
        raise KeyInURL(
            "API keys are never accepted in the URL. Send the key in the "
            "'Authorization: Bearer <key>' header, and consider rolling it: URLs end up in logs."
        )
    raw_key = key_from_headers(request.headers)
    if raw_key is None:
        raise missing_credentials()
    ip = request_ip(request)
    services.failed_keys.check(ip)  # 429 while this address is blocked for bad keys
    user_agent = request.headers.get("user-agent")
    decision = await services.verifier.verify_async(raw_key, client_ip=ip, user_agent=user_agent)
    if decision.code in UNAUTHENTICATED_CODES or decision.key is None:
        services.failed_keys.failed(ip)  # 429 instead of 401 once the budget is spent
        raise authentication_failed(decision.code)
    if decision.code is GrantCode.FORBIDDEN:
        raise PermissionDenied(
            GrantCode.FORBIDDEN, "The API key may not be used from this IP address."
        )
    key = decision.key
    actor = Actor(f"key:{key.key_id}", str(ip) if ip is not None else None, user_agent)
    return Authenticated(key, Caller(key.organization_id, key.scopes, actor))


def require(scope: str) -> Any:
    """``Depends`` on a key that authenticates and holds ``scope``; it yields the caller.

    Use as ``caller: Annotated[Caller, require(scopes.KEYS_READ)]``.
    """

    async def dependency(auth: Annotated[Authenticated, Depends(authenticate)]) -> Caller:
        if not grants(auth.caller.scopes, scope):
            raise PermissionDenied(
                GrantCode.INSUFFICIENT_SCOPE,
                f"The API key lacks the scope '{scope}' this call needs.",
            )
        return auth.caller

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return Depends(dependency)
