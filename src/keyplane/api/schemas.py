"""Request and response bodies of the management API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from keyplane.core.grant import Allowance, Decision, GrantCode, KeyState, KeyStatus
from keyplane.service.records import (
    AuditEventRecord,
    CreatedKey,
    KeyRecord,
    Page,
    ProjectRecord,
    Quota,
    RateLimit,
    UsageBucket,
)
from keyplane.service.validation import MAX_LIMIT, MAX_RATE_WINDOW_SECONDS, MAX_USER_AGENT_LENGTH

T = TypeVar("T")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


def _iso_8601_only(value: Any) -> Any:
    # Pydantic would also take a number (or a numeric string) as Unix time; the
    # schema promises an RFC 3339 date-time, so hold to it.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("a time must be an RFC 3339 date-time string")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("a time must be an RFC 3339 date-time string")
    return value


#: A timestamp with a time zone, normalized to UTC; one that overflows is a 422, not a
#: 500; a number is a 422, not Unix time.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only), AfterValidator(_to_utc)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------


class ProjectCreate(Strict):
    name: str = Field(min_length=1, max_length=200)


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


# -- responses -----------------------------------------------------------------


class ProjectOut(BaseModel):
    id: str
    name: str
    organization_id: str
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, record: ProjectRecord) -> ProjectOut:
        return cls(
            id=record.id,
            name=record.name,
            organization_id=record.organization_id,
            created_at=record.created_at,
            created_by=record.created_by,
        )


class RateLimitOut(BaseModel):
    limit: int
    window_seconds: int


class QuotaOut(BaseModel):
    limit: int
    refill: Literal["day", "month"] | None
    used: int = Field(description="Uses counted in the current period (may lag by ~1 s).")
    remaining: int
    resets_at: datetime | None


class KeyOut(BaseModel):
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

    @classmethod
    def of(cls, record: KeyRecord) -> KeyOut:
        return cls(
            id=record.id,
            name=record.name,
            hint=record.hint,
            project_id=record.project_id,
            organization_id=record.organization_id,
            status=record.status,
            enabled=record.enabled,
            scopes=list(record.scopes),
            ip_allowlist=list(record.ip_allowlist),
            metadata=dict(record.metadata),
            created_at=record.created_at,
            created_by=record.created_by,
            updated_at=record.updated_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            rolled_from_id=record.rolled_from_id,
            last_used_at=record.last_used_at,
            last_used_ip=record.last_used_ip,
            last_used_user_agent=record.last_used_user_agent,
            rate_limit=(
                RateLimitOut(
                    limit=record.rate_limit.limit,
                    window_seconds=record.rate_limit.window_seconds,
                )
                if record.rate_limit is not None
                else None
            ),
            quota=(
                QuotaOut(
                    limit=record.quota.limit,
                    refill=record.quota.refill,
                    used=record.quota.used,
                    remaining=record.quota.remaining,
                    resets_at=record.quota.resets_at,
                )
                if record.quota is not None
                else None
            ),
        )


class CreatedKeyOut(KeyOut):
    key: str = Field(description="The key itself. Shown in this response only; store it now.")

    @classmethod
    def of_created(cls, created: CreatedKey) -> CreatedKeyOut:
        return cls(key=created.secret.reveal(), **KeyOut.of(created.record).model_dump())


class AuditEventOut(BaseModel):
    id: str
    organization_id: str
    actor: str
    action: str
    target_type: str
    target_id: str
    client_ip: str | None
    user_agent: str | None
    occurred_at: datetime
    details: dict[str, Any]

    @classmethod
    def of(cls, record: AuditEventRecord) -> AuditEventOut:
        return cls(
            id=record.id,
            organization_id=record.organization_id,
            actor=record.actor,
            action=record.action,
            target_type=record.target_type,
            target_id=record.target_id,
            client_ip=record.client_ip,
            user_agent=record.user_agent,
            occurred_at=record.occurred_at,
            details=dict(record.details),
        )


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last."
    )


def page_of(page: Page[Any], convert: Any) -> dict[str, Any]:
    return {"items": [convert(item) for item in page.items], "next_cursor": page.next_cursor}


class WhoAmI(BaseModel):
    id: str
    name: str
    hint: str
    project_id: str
    organization_id: str
    scopes: list[str]
    expires_at: datetime | None

    @classmethod
    def of(cls, key: KeyState) -> WhoAmI:
        return cls(
            id=key.key_id,
            name=key.name,
            hint=key.hint,
            project_id=key.project_id,
            organization_id=key.organization_id,
            scopes=list(key.scopes),
            expires_at=key.expires_at,
        )


class AllowanceOut(BaseModel):
    limit: int
    remaining: int
    reset: datetime | None = Field(description="When it frees up again; null: never.")

    @classmethod
    def of(cls, allowance: Allowance | None) -> AllowanceOut | None:
        if allowance is None:
            return None
        reset = (
            datetime.fromtimestamp(allowance.reset_at, UTC)
            if allowance.reset_at is not None
            else None
        )
        return cls(limit=allowance.limit, remaining=max(0, allowance.remaining), reset=reset)


class UsageBucketOut(BaseModel):
    start: datetime
    total: int
    outcomes: dict[str, int] = Field(description="Verifications by grant code, e.g. VALID.")

    @classmethod
    def of(cls, bucket: UsageBucket) -> UsageBucketOut:
        return cls(start=bucket.start, total=bucket.total, outcomes=dict(bucket.outcomes))


class UsageOut(BaseModel):
    key_id: str
    interval: Literal["hour", "day"]
    buckets: list[UsageBucketOut]


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


class Health(BaseModel):
    status: Literal["ok"]


# -- leak reports (GitHub secret scanning) -------------------------------------


class LeakReportItem(BaseModel):
    """One match in a GitHub secret scanning report.

    Unknown fields are ignored, not refused: GitHub may add fields to its
    reports, and a refused report would leave a leaked key alive.
    """

    model_config = ConfigDict(extra="ignore")

    token: str = Field(max_length=1000)
    type: str = Field(max_length=100)
    url: str = Field(max_length=4000)
    source: str | None = Field(default=None, max_length=100)


class LeakVerdictOut(BaseModel):
    token_hash: str = Field(description="SHA-256 of the reported token, hex")
    token_type: str
    label: Literal["true_positive", "false_positive"]


# -- problems (RFC 9457) ---------------------------------------------------------


class ProblemOut(BaseModel):
    """An error answer (``application/problem+json``); ``code`` is stable, ``detail`` is prose."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str | None = None


_PROBLEM_REASONS: dict[int, str] = {
    400: "Malformed request (bad JSON, a key in the URL)",
    401: "No usable credential",
    403: "The credential may not do this (scope, IP allowlist, role)",
    404: "No such object in the caller's organization",
    409: "The object's state forbids the change",
    413: "The request body is too large",
    422: "The request is well formed but its values are not acceptable",
    429: "Too many failed attempts from this address; see Retry-After",
    431: "The request headers are too large",
    503: "The database is unavailable; retry after Retry-After",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem answers (default: every one the API gives)."""
    schema = {"$ref": "#/components/schemas/ProblemOut"}
    return {
        status: {
            "model": ProblemOut,
            "description": _PROBLEM_REASONS[status],
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses or tuple(_PROBLEM_REASONS)
    }
