"""The grant decision: does this key grant this request? A pure function.

Access is granted if and only if, checked in this order:

1. the key exists and is no canary      else NOT_FOUND
2. it is not revoked                    else REVOKED
3. it is enabled                        else DISABLED
4. it has not expired (expires_at > now) else EXPIRED
5. the client IP is inside the key's allowlist, when it has one
   (an unknown client IP never matches)  else FORBIDDEN
6. it holds every required scope        else INSUFFICIENT_SCOPE

The first failing rule gives the code. Rate limits and usage quotas
(RATE_LIMITED, USAGE_EXCEEDED) need counters shared across requests, so the
verifier (``service/limiter.py``) applies them after this pure rule, to a key
that is otherwise VALID. docs/security.md carries the same rule.

Everything that asks "is this key usable" asks this module:

- :func:`decide` is the whole rule;
- :func:`standing` is rules 2-4 (revoked, disabled, expired), the part that
  depends on the key alone; :func:`key_status` names its answer as the status
  the API and console show (active, revoked, disabled, expired);
- :func:`is_plainly_valid` is the verifier's fast path: True exactly when
  :func:`decide` grants a request that names no scope from any address and no
  limit applies, so the verifier can reuse a VALID decision without building
  one. A property test
  (tests/core/test_grant_rule.py) checks it against :func:`decide` on every state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from keyplane.core import scopes as scope_rules
from keyplane.core.network import IPAddress, IPNetwork, allowed


class KeyStatus(StrEnum):
    """A key's status as the API and console show it: :func:`standing`, named."""

    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"
    EXPIRED = "expired"


class GrantCode(StrEnum):
    VALID = "VALID"
    NOT_FOUND = "NOT_FOUND"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    DISABLED = "DISABLED"
    FORBIDDEN = "FORBIDDEN"
    INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"
    RATE_LIMITED = "RATE_LIMITED"
    USAGE_EXCEEDED = "USAGE_EXCEEDED"


#: Codes that mean "this credential does not authenticate" (HTTP 401).
UNAUTHENTICATED_CODES = frozenset(
    {GrantCode.NOT_FOUND, GrantCode.REVOKED, GrantCode.EXPIRED, GrantCode.DISABLED}
)


@dataclass(frozen=True, slots=True)
class KeyState:
    """What the grant decision needs to know about a stored key. Holds no secret."""

    key_id: str
    name: str
    hint: str
    project_id: str
    organization_id: str
    scopes: tuple[str, ...]
    enabled: bool
    revoked_at: datetime | None
    expires_at: datetime | None
    ip_allowlist: tuple[IPNetwork, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: At most ``rate_limit`` requests per ``rate_limit_window`` seconds (None: no limit).
    rate_limit: int | None = None
    rate_limit_window: int = 60
    #: At most ``quota_limit`` uses per period (``quota_refill``: "day", "month" or None
    #: for a quota that never refills); ``quota_used`` were counted in ``quota_period``.
    quota_limit: int | None = None
    quota_refill: str | None = None
    quota_used: int = 0
    quota_period: str = ""
    #: A canary key is refused exactly like an unknown one (its use is the alarm).
    canary: bool = False


@dataclass(frozen=True, slots=True)
class Allowance:
    """Where a key stands against one of its limits after this request."""

    limit: int
    remaining: int
    #: Unix time (seconds) when the window or quota period ends; None if it never refills.
    reset_at: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    code: GrantCode
    key: KeyState | None = None
    missing_scopes: tuple[str, ...] = ()
    #: Set when the key has a rate limit / a usage quota and the rule got that far.
    rate_limit: Allowance | None = None
    quota: Allowance | None = None

    @property
    def valid(self) -> bool:
        return self.code is GrantCode.VALID


def standing(
    revoked_at: datetime | None, enabled: bool, expires_at: datetime | None, now: datetime
) -> GrantCode:
    """Rules 2-4, which depend on the key alone: REVOKED, DISABLED, EXPIRED or VALID."""
    if revoked_at is not None:
        return GrantCode.REVOKED
    if not enabled:
        return GrantCode.DISABLED
    if expires_at is not None and expires_at <= now:
        return GrantCode.EXPIRED
    return GrantCode.VALID


_STATUS: dict[GrantCode, KeyStatus] = {
    GrantCode.VALID: KeyStatus.ACTIVE,
    GrantCode.REVOKED: KeyStatus.REVOKED,
    GrantCode.DISABLED: KeyStatus.DISABLED,
    GrantCode.EXPIRED: KeyStatus.EXPIRED,
}


def key_status(
    revoked_at: datetime | None, enabled: bool, expires_at: datetime | None, now: datetime
) -> KeyStatus:
    """A key's status: its :func:`standing`, in the grant rule's order."""
    return _STATUS[standing(revoked_at, enabled, expires_at, now)]


def is_plainly_valid(key: KeyState, now: datetime, required_scopes: Iterable[str]) -> bool:
    """True iff :func:`decide` grants an unscoped request from any client IP, no limit applying.

    That is: :func:`standing` is VALID, no scope is required, the key has no
    allowlist, no rate limit and no quota. Written out rather than calling
    :func:`standing`, as it runs on every cache hit (bench/verify.py); the
    property test in tests/core/test_grant_rule.py holds it to :func:`decide`.
    """
    return (
        key.revoked_at is None
        and key.enabled
        and not required_scopes
        and not key.ip_allowlist
        and key.rate_limit is None
        and key.quota_limit is None
        and not key.canary
        and (key.expires_at is None or key.expires_at > now)
    )


def decide(
    key: KeyState | None,
    *,
    now: datetime,
    client_ip: IPAddress | None = None,
    required_scopes: Iterable[str] = (),
) -> Decision:
    """Apply the grant rule in the module docstring; ``now`` must be timezone-aware."""
    if key is None or key.canary:
        return Decision(GrantCode.NOT_FOUND)
    code = standing(key.revoked_at, key.enabled, key.expires_at, now)
    if code is not GrantCode.VALID:
        return Decision(code, key)
    if not allowed(client_ip, key.ip_allowlist):
        return Decision(GrantCode.FORBIDDEN, key)
    missing = scope_rules.missing(key.scopes, required_scopes)
    if missing:
        return Decision(GrantCode.INSUFFICIENT_SCOPE, key, missing)
    return Decision(GrantCode.VALID, key)
