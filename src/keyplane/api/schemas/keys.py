"""Keys: the bodies that create, change and roll one, and the answers read from
``service.records.KeyRecord`` (its rate limit, quota and usage included)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from keyplane.api.schemas.base import FromRecord, Strict, Timestamp
from keyplane.core.grant import KeyStatus
from keyplane.service.records import CreatedKey, Quota, RateLimit
from keyplane.service.validation import MAX_LIMIT, MAX_RATE_WINDOW_SECONDS

# -- requests ------------------------------------------------------------------


class RateLimitIn(Strict):
    limit: int = Field(ge=1, le=MAX_LIMIT, description="Requests allowed per window.")
    window_seconds: int = Field(default=60, ge=1, le=MAX_RATE_WINDOW_SECONDS)

    def value(self) -> RateLimit:
        return RateLimit(self.limit, self.window_seconds)


class QuotaIn(Strict):
    limit: int = Field(ge=1, le=MAX_LIMIT, description="Uses allowed per period (or in total).")
    refill: Literal["day", "month"] | None = Field(
        default=None, description="Start a new count every UTC day or month; null: never."
    )

    def value(self) -> Quota:
        return Quota(self.limit, self.refill)


class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=list, max_length=64)
    expires_at: Timestamp | None = Field(default=None, description="When the key stops working.")
    expires_in: str | None = Field(
        default=None,
        max_length=20,
        description="Alternative to expires_at: a duration such as 30d or 12h.",
    )
    ip_allowlist: list[str] = Field(default_factory=list, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    rate_limit: RateLimitIn | None = Field(default=None, description="e.g. 100 per 60 s.")
    quota: QuotaIn | None = Field(default=None, description="e.g. 10,000 uses, refilled daily.")
    canary: bool = Field(
        default=False,
        description=(
            "A canary key: always refused exactly like an unknown key, and any use raises "
            "the key.canary_used event (with the caller's IP and user agent). Plant it "
            "where a leak would be found."
        ),
    )


class KeyUpdate(Strict):
    """Only the fields sent change; ``expires_at``, ``rate_limit`` or ``quota`` set to null
    removes the expiry, the rate limit or the quota."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    scopes: list[str] | None = Field(default=None, max_length=64)
    expires_at: Timestamp | None = None
    metadata: dict[str, Any] | None = None
    enabled: bool | None = None
    ip_allowlist: list[str] | None = Field(default=None, max_length=100)
    rate_limit: RateLimitIn | None = None
    quota: QuotaIn | None = None


class KeyRoll(Strict):
    grace_period_seconds: int = Field(
        default=86_400,
        ge=0,
        le=90 * 86_400,
        description="How long the old key keeps working; 0 ends it now.",
    )


# -- answers, read from the records (no docstrings: they would become OpenAPI text) ----


# From ``records.RateLimit``.
class RateLimitOut(FromRecord):
    limit: int
    window_seconds: int


# From ``records.QuotaStatus``.
class QuotaOut(FromRecord):
    limit: int
    refill: Literal["day", "month"] | None
    used: int = Field(description="Uses counted in the current period (may lag by ~1 s).")
    remaining: int
    resets_at: datetime | None


# From ``records.KeyRecord``.
class KeyOut(FromRecord):
    id: str
    name: str
    hint: str = Field(description="The prefix and last four characters, e.g. kp_...abcd.")
    project_id: str
    organization_id: str
    status: KeyStatus
    enabled: bool
    scopes: list[str]
    ip_allowlist: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    created_by: str
    updated_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rolled_from_id: str | None
    last_used_at: datetime | None
    last_used_ip: str | None
    last_used_user_agent: str | None
    rate_limit: RateLimitOut | None = None
    quota: QuotaOut | None = None
    canary: bool = False
    disabled_reason: str | None = Field(
        default=None, description="stale: disabled by the stale-key policy."
    )


# From ``records.CreatedKey``: the key's record, and its value (this once).
class CreatedKeyOut(KeyOut):
    key: str = Field(description="The key itself. Shown in this response only; store it now.")

    @classmethod
    def of_created(cls, created: CreatedKey) -> CreatedKeyOut:
        return cls(key=created.secret.reveal(), **dict(KeyOut.model_validate(created.record)))


# From ``records.UsageBucket`` (``total`` is its property).
class UsageBucketOut(FromRecord):
    start: datetime
    total: int
    outcomes: dict[str, int] = Field(description="Verifications by grant code, e.g. VALID.")


class UsageOut(FromRecord):
    key_id: str
    interval: Literal["hour", "day"]
    buckets: list[UsageBucketOut]
