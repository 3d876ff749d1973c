"""Checking a key: ``/verify``'s request and answer, and ``/whoami``'s; both are read
from the grant decision (``core.grant``), not from a stored record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from keyplane.api.schemas.base import FromRecord, Strict
from keyplane.core.grant import Allowance, Decision, GrantCode
from keyplane.service.validation import MAX_USER_AGENT_LENGTH


class VerifyRequest(Strict):
    """What a service that was handed a key asks; ``client_ip`` and ``user_agent`` describe
    the end client, and become the key's last-used details."""

    key: str = Field(max_length=256)
    scopes: list[str] = Field(
        default_factory=list, max_length=64, description="Scopes the key must hold."
    )
    client_ip: str | None = Field(
        default=None,
        max_length=64,
        description="The end client's IP, checked against the key's allowlist.",
    )
    user_agent: str | None = Field(
        default=None, max_length=MAX_USER_AGENT_LENGTH, description="The end client's user agent."
    )


# From ``core.grant.KeyState``, whose ``key_id`` is the answer's ``id``.
class WhoAmI(FromRecord):
    id: str = Field(validation_alias="key_id")
    name: str
    hint: str
    project_id: str
    organization_id: str
    scopes: list[str]
    expires_at: datetime | None


class AllowanceOut(BaseModel):
    limit: int
    remaining: int
    reset: datetime | None = Field(description="When it frees up again; null: never.")

    @classmethod
    def of(cls, allowance: Allowance | None) -> AllowanceOut | None:
        # Computed: a reset time from the Unix time the counters keep, and no negative count.
        if allowance is None:
            return None
        reset = (
            datetime.fromtimestamp(allowance.reset_at, UTC)
            if allowance.reset_at is not None
            else None
        )
        return cls(limit=allowance.limit, remaining=max(0, allowance.remaining), reset=reset)


class VerifyResponse(BaseModel):
    valid: bool
    code: GrantCode
    key_id: str | None = None
    name: str | None = None
    project_id: str | None = None
    organization_id: str | None = None
    scopes: list[str] | None = None
    metadata: dict[str, Any] | None = None
    expires_at: datetime | None = None
    missing_scopes: list[str] | None = None
    rate_limit: AllowanceOut | None = Field(
        default=None, description="The key's rate limit after this call, if it has one."
    )
    quota: AllowanceOut | None = Field(
        default=None, description="The key's usage quota after this call, if it has one."
    )

    @classmethod
    def of(cls, decision: Decision) -> VerifyResponse:
        key = decision.key
        if key is None or (
            decision.code is not GrantCode.VALID
            and decision.code is not GrantCode.INSUFFICIENT_SCOPE
        ):
            # Say why, but hand out nothing about a key that does not grant access.
            return cls(
                valid=False,
                code=decision.code,
                key_id=key.key_id if key else None,
                rate_limit=AllowanceOut.of(decision.rate_limit),
                quota=AllowanceOut.of(decision.quota),
            )
        return cls(
            valid=decision.valid,
            code=decision.code,
            key_id=key.key_id,
            name=key.name,
            project_id=key.project_id,
            organization_id=key.organization_id,
            scopes=list(key.scopes),
            metadata=dict(key.metadata),
            expires_at=key.expires_at,
            missing_scopes=list(decision.missing_scopes) or None,
            rate_limit=AllowanceOut.of(decision.rate_limit),
            quota=AllowanceOut.of(decision.quota),
        )
