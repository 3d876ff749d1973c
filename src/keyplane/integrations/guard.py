"""One request's key, checked: the part every middleware and dependency shares.

Takes what any framework can give (headers, path, query string, peer
address), applies the same rules as Keyplane's own API (the key comes from
``Authorization: Bearer``/``apiKey`` or ``X-API-Key``, never the URL) and
answers an :class:`Outcome` or the RFC 9457 problem to send back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from http import HTTPStatus

from keyplane.core.grant import GrantCode
from keyplane.core.network import IPNetwork
from keyplane.core.refusals import (
    Refusal,
    forbidden_ip,
    key_sent_in_url,
    lacking_scopes,
    missing_key,
    unusable_key,
)
from keyplane.core.scopes import missing
from keyplane.http.client_ip import client_ip
from keyplane.http.credentials import key_from_headers, key_in_url
from keyplane.http.problems import PROBLEM_JSON, Problem, problem_for
from keyplane.integrations.verifiers import UNAVAILABLE, KeyIdentity, KeyVerifier, Outcome

_LIMIT_CODES = frozenset({GrantCode.RATE_LIMITED, GrantCode.USAGE_EXCEEDED})


class RequestFacts:
    """What a framework tells about a request; headers looked up in lowercase."""

    def __init__(
        self,
        headers: Mapping[str, str],
        path: str,
        query_string: str,
        peer: str | None,
        trusted_proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.headers = headers
        self.path = path
        self.query_string = query_string
        ip = client_ip(peer, headers.get("x-forwarded-for"), trusted_proxies)
        self.client_ip = str(ip) if ip is not None else None
        self.user_agent = headers.get("user-agent")


def excluded(path: str, exclude_paths: Iterable[str]) -> bool:
    """Whether ``path`` needs no key: it equals an entry, or is under one ending in ``/``."""
    return any(
        path == entry or (entry.endswith("/") and path.startswith(entry)) for entry in exclude_paths
    )


def _precheck(facts: RequestFacts, verifier: KeyVerifier) -> str | Outcome:
    """The key to verify, or the outcome that needs no verifier (no key, key in URL)."""
    if key_in_url(facts.path, facts.query_string, verifier.key_format):
        return Outcome(Refusal.KEY_IN_URL)
    key = key_from_headers(facts.headers)
    if key is None:
        return Outcome(Refusal.MISSING_KEY)
    return key


def check(facts: RequestFacts, verifier: KeyVerifier, scopes: Iterable[str]) -> Outcome:
    key = _precheck(facts, verifier)
    if isinstance(key, Outcome):
        return key
    return verifier.check(
        key, scopes=tuple(scopes), client_ip=facts.client_ip, user_agent=facts.user_agent
    )


async def check_async(facts: RequestFacts, verifier: KeyVerifier, scopes: Iterable[str]) -> Outcome:
    key = _precheck(facts, verifier)
    if isinstance(key, Outcome):
        return key
    return await verifier.check_async(
        key, scopes=tuple(scopes), client_ip=facts.client_ip, user_agent=facts.user_agent
    )


def recheck(identity: KeyIdentity, scopes: Iterable[str]) -> Outcome:
    """Scopes asked again of a key a middleware already let in: decided locally."""
    lacking = missing(identity.scopes, scopes)
    if lacking:
        return Outcome(GrantCode.INSUFFICIENT_SCOPE, identity, lacking)
    return Outcome(GrantCode.VALID, identity)


def problem(outcome: Outcome) -> Problem:
    """The answer for a request the outcome refuses: 400, 401, 403, 429 or 503.

    The same code, status, type and message as Keyplane's own API gives
    (``core.refusals``); only the headers differ where a middleware knows less
    (a wait in seconds rather than the key's limit).
    """
    code = outcome.code
    if code == Refusal.MISSING_KEY:
        return problem_for(missing_key())
    if code == Refusal.KEY_IN_URL:
        return problem_for(key_sent_in_url())
    if code == GrantCode.FORBIDDEN:
        return problem_for(forbidden_ip())
    if code == GrantCode.INSUFFICIENT_SCOPE:
        return problem_for(lacking_scopes(outcome.missing_scopes))
    if code in _LIMIT_CODES:
        refusal = Refusal.of(code)
        limited = Problem(refusal.status, refusal.problem_type, refusal.detail(), {"code": refusal})
        if outcome.retry_after is None:  # a quota that never refills: no wait helps
            return limited
        wait = max(1, math.ceil(outcome.retry_after))
        return replace(limited, headers={"Retry-After": str(wait)})
    if code == UNAVAILABLE:
        refusal = Refusal.VERIFICATION_UNAVAILABLE
        return Problem(
            refusal.status,
            refusal.problem_type,
            refusal.detail(),
            {"code": refusal},
            {"Retry-After": "1"},
        )
    return problem_for(unusable_key(code))  # unknown, revoked, expired, disabled; else unknown


def wsgi_response(problem: Problem) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, headers and body of a problem, for WSGI and Flask."""
    body = json.dumps(problem.body()).encode()
    headers = [
        ("Content-Type", PROBLEM_JSON),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *problem.headers.items(),
    ]
    return f"{problem.status} {HTTPStatus(problem.status).phrase}", headers, body
