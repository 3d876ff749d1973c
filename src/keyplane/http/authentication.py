"""The request's key, checked: what every face that takes API keys does first.

Framework-free so that the FastAPI dependency, the pure-ASGI hot path and the
IonQ surface share one rule: a key in the URL is refused (400), no key or an
unusable one is 401 (429 once the client IP sent too many), a key used from
outside its allowlist is 403, and a key over its rate limit or quota is 429.
A missing scope is left to the caller, which knows what the route needs. The
codes, statuses and messages are ``core.refusals.Refusal``, which the
middleware (``integrations/guard.py``) answers from too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from keyplane.core.errors import NotPermitted, ratelimit_headers
from keyplane.core.grant import UNAUTHENTICATED_CODES, Decision, GrantCode, KeyState
from keyplane.core.keys import KeyFormat
from keyplane.core.network import IPAddress, IPNetwork
from keyplane.core.refusals import (
    forbidden_ip,
    key_sent_in_url,
    lacking_scopes,
    missing_key,
    over_limit,
    unusable_key,
)
from keyplane.http.client_ip import client_ip
from keyplane.http.credentials import key_from_headers, key_in_url


class KeyVerifier(Protocol):
    """What :func:`check_request_key` needs of ``service.keys.verifier.Verifier``."""

    async def verify_async(
        self,
        raw_key: str,
        *,
        required_scopes: Iterable[str] = (),
        client_ip: IPAddress | None = None,
        user_agent: str | None = None,
        organization_id: str | None = None,
    ) -> Decision: ...


class FailedAttempts(Protocol):
    """What :func:`check_request_key` needs of ``service.limits.failed_keys.FailedKeyLimiter``: both
    raise ``TooManyAttempts`` (429) for a client IP that sent too many bad keys."""

    def check(self, client_ip: IPAddress | None) -> None: ...

    def failed(self, client_ip: IPAddress | None) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckedKey:
    """A key that authenticates the request (its scope may still be missing)."""

    key: KeyState
    code: GrantCode
    client_ip: IPAddress | None
    user_agent: str | None
    #: ``RateLimit-*`` headers to answer with (empty for a key without limits).
    limit_headers: dict[str, str]


async def check_request_key(
    verifier: KeyVerifier,
    *,
    key_format: KeyFormat,
    trusted_proxies: tuple[IPNetwork, ...],
    path: str,
    query: str,
    headers: Mapping[str, str],
    peer: str | None,
    failures: FailedAttempts | None = None,
    required_scopes: Iterable[str] = (),
    check_url: bool = True,
    header_hint: str = "Authorization: Bearer <key>",
) -> CheckedKey:
    """Verify the request's key or raise the problem to answer with.

    ``headers`` must be looked up by lowercase name. ``check_url=False`` skips
    the search of the URL for a key (a regular expression) on paths that
    cannot hold one. ``failures`` counts unusable keys per client IP and refuses
    (429) an address that sent too many, before its key is even looked at.
    """
    if check_url and key_in_url(path, query, key_format):
        raise key_sent_in_url(header_hint)
    raw_key = key_from_headers(headers)
    if raw_key is None:
        raise missing_key()
    ip = client_ip(peer, headers.get("x-forwarded-for"), trusted_proxies)
    if failures is not None:
        failures.check(ip)
    user_agent = headers.get("user-agent")
    decision = await verifier.verify_async(
        raw_key, required_scopes=required_scopes, client_ip=ip, user_agent=user_agent
    )
    if decision.code in UNAUTHENTICATED_CODES or decision.key is None:
        if failures is not None:
            failures.failed(ip)  # 429 instead of 401 once the budget is spent
        raise unusable_key(decision.code)
    if decision.code is GrantCode.FORBIDDEN:
        raise forbidden_ip()
    return CheckedKey(decision.key, decision.code, ip, user_agent, limit_state(decision))


def limit_state(decision: Decision) -> dict[str, str]:
    """RateLimit headers for a key with a rate limit or quota; raises 429 when over it."""
    key = decision.key
    if key is None or (decision.rate_limit is None and decision.quota is None):
        return {}
    rate = decision.rate_limit
    window = key.rate_limit_window if rate is not None else None
    allowance = rate if rate is not None else decision.quota
    assert allowance is not None
    if decision.code is GrantCode.USAGE_EXCEEDED and decision.quota is not None:
        allowance, window = decision.quota, None
    if decision.code in (GrantCode.RATE_LIMITED, GrantCode.USAGE_EXCEEDED):
        raise over_limit(
            decision.code, limit=allowance.limit, reset_at=allowance.reset_at, window=window
        )
    return ratelimit_headers(allowance.limit, allowance.remaining, allowance.reset_at, window)


def missing_scope(scope: str | None) -> NotPermitted:
    """The 403 for a key that authenticates but lacks the scope the route needs."""
    return lacking_scopes((scope,))
