"""What the API answers, as typed, frozen values.

Each model is built from the API's JSON with ``from_json`` (members the SDK
does not know yet are ignored, so a newer server does not break an older SDK)
and turns back into JSON-ready data with ``to_json``. None of them holds a key
value except :class:`CreatedKey`, whose ``key`` is a :class:`SecretKey` that
shows only its hint until you call ``reveal()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from keyplane.core.keys import SecretKey

T = TypeVar("T")


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value))


def _required_time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value or ())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, SecretKey):
        return value.reveal()
    if isinstance(value, _Model):
        return value.to_json()
    return value


class _Model:
    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """The model as JSON-ready data (times in RFC 3339)."""
        return {item.name: _jsonable(getattr(self, item.name)) for item in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class WhoAmI(_Model):
    """The key the client authenticates with. Its ``str`` is one readable line."""

    id: str
    name: str
    hint: str
    project_id: str
    organization_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WhoAmI:
        return cls(
            id=data["id"],
            name=data["name"],
            hint=data["hint"],
            project_id=data["project_id"],
            organization_id=data["organization_id"],
            scopes=_strings(data.get("scopes")),
            expires_at=_time(data.get("expires_at")),
        )

    def __str__(self) -> str:
        scopes = ", ".join(self.scopes) or "none"
        expiry = f", expires {_iso(self.expires_at)}" if self.expires_at else ""
        return (
            f"Key {self.name!r} ({self.id}, {self.hint}) in project {self.project_id} "
            f"of organization {self.organization_id}; scopes: {scopes}{expiry}"
        )


@dataclass(frozen=True, slots=True)
class Project(_Model):
    id: str
    name: str
    organization_id: str
    created_at: datetime
    created_by: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Project:
        return cls(
            id=data["id"],
            name=data["name"],
            organization_id=data["organization_id"],
            created_at=_required_time(data["created_at"]),
            created_by=data["created_by"],
        )


@dataclass(frozen=True, slots=True)
class RateLimit(_Model):
    """At most ``limit`` requests per ``window_seconds``: a key's setting, sent and read."""

    limit: int
    window_seconds: int = 60

    @classmethod
    def from_json(cls, data: Any) -> RateLimit | None:
        if not isinstance(data, Mapping):
            return None
        return cls(int(data["limit"]), int(data.get("window_seconds", 60)))


@dataclass(frozen=True, slots=True)
class Quota(_Model):
    """The quota to give a key: at most ``limit`` uses, counted again from zero every
    UTC ``"day"`` or ``"month"`` (``refill``), or in total (``refill=None``)."""

    limit: int
    refill: Literal["day", "month"] | None = None


@dataclass(frozen=True, slots=True)
class QuotaStatus(_Model):
    """A key's quota as the server reads it: the setting, and the uses counted in the
    current period (``used`` may lag by about a second); ``resets_at`` None means never."""

    limit: int
    refill: str | None
    used: int
    remaining: int
    resets_at: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> QuotaStatus | None:
        if not isinstance(data, Mapping):
            return None
        return cls(
            limit=int(data["limit"]),
            refill=data.get("refill"),
            used=int(data["used"]),
            remaining=int(data["remaining"]),
            resets_at=_time(data.get("resets_at")),
        )


@dataclass(frozen=True, slots=True)
class Key(_Model):
    """A key's record. ``hint`` (``kp_...abcd``) is safe to show; the value is never here."""

    id: str
    name: str
    hint: str
    project_id: str
    organization_id: str
    status: str
    enabled: bool
    scopes: tuple[str, ...]
    ip_allowlist: tuple[str, ...]
    metadata: Mapping[str, Any]
    created_at: datetime
    created_by: str
    updated_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rolled_from_id: str | None
    last_used_at: datetime | None
    last_used_ip: str | None
    last_used_user_agent: str | None
    rate_limit: RateLimit | None = None
    quota: QuotaStatus | None = None
    canary: bool = False
    disabled_reason: str | None = None

    @classmethod
    def _fields_of(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": data["id"],
            "name": data["name"],
            "hint": data["hint"],
            "project_id": data["project_id"],
            "organization_id": data["organization_id"],
            "status": data["status"],
            "enabled": bool(data["enabled"]),
            "scopes": _strings(data.get("scopes")),
            "ip_allowlist": _strings(data.get("ip_allowlist")),
            "metadata": dict(data.get("metadata") or {}),
            "created_at": _required_time(data["created_at"]),
            "created_by": data["created_by"],
            "updated_at": _required_time(data["updated_at"]),
            "expires_at": _time(data.get("expires_at")),
            "revoked_at": _time(data.get("revoked_at")),
            "rolled_from_id": data.get("rolled_from_id"),
            "last_used_at": _time(data.get("last_used_at")),
            "last_used_ip": data.get("last_used_ip"),
            "last_used_user_agent": data.get("last_used_user_agent"),
            "rate_limit": RateLimit.from_json(data.get("rate_limit")),
            "quota": QuotaStatus.from_json(data.get("quota")),
            "canary": bool(data.get("canary", False)),
            "disabled_reason": data.get("disabled_reason"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Key:
        return cls(**cls._fields_of(data))


@dataclass(frozen=True, slots=True)
class CreatedKey(Key):
    """A key just created or rolled, with its value: the only time anyone sees it.

    ``key`` is a :class:`SecretKey`: ``str``/``repr`` show the hint, ``key.reveal()``
    gives the value to store.
    """

    key: SecretKey = field(kw_only=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreatedKey:
        value = str(data["key"])
        prefix = value.partition("_")[0]
        return cls(**cls._fields_of(data), key=SecretKey(value, prefix))


@dataclass(frozen=True, slots=True)
class AuditEvent(_Model):
    id: str
    organization_id: str
    actor: str
    action: str
    target_type: str
    target_id: str
    client_ip: str | None
    user_agent: str | None
    occurred_at: datetime
    details: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEvent:
        return cls(
            id=data["id"],
            organization_id=data["organization_id"],
            actor=data["actor"],
            action=data["action"],
            target_type=data["target_type"],
            target_id=data["target_id"],
            client_ip=data.get("client_ip"),
            user_agent=data.get("user_agent"),
            occurred_at=_required_time(data["occurred_at"]),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True, slots=True)
class Event(_Model):
    """Something that happened (``key.revoked``...); ``id`` is the webhook-id of its deliveries."""

    id: str
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            id=data["id"],
            type=data["type"],
            occurred_at=_required_time(data["occurred_at"]),
            data=dict(data.get("data") or {}),
        )


@dataclass(frozen=True, slots=True)
class EventType(_Model):
    name: str
    description: str
    mailed: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventType:
        return cls(data["name"], data["description"], bool(data.get("mailed")))

    @classmethod
    def list_from_json(cls, data: Any) -> list[EventType]:
        return [cls.from_json(item) for item in data]


@dataclass(frozen=True, slots=True)
class KeyCaller(_Model):
    """A client IP or user agent (empty: none was sent) that used a key."""

    value: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyCaller:
        return cls(
            value=data["value"],
            count=int(data["count"]),
            first_seen_at=_required_time(data["first_seen_at"]),
            last_seen_at=_required_time(data["last_seen_at"]),
        )


@dataclass(frozen=True, slots=True)
class KeyCallers(_Model):
    """Who used a key in the last ``days`` days: what a revocation would break."""

    key_id: str
    days: int
    ips: tuple[KeyCaller, ...]
    user_agents: tuple[KeyCaller, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyCallers:
        return cls(
            key_id=data["key_id"],
            days=int(data["days"]),
            ips=tuple(KeyCaller.from_json(item) for item in data.get("ips") or ()),
            user_agents=tuple(KeyCaller.from_json(item) for item in data.get("user_agents") or ()),
        )


@dataclass(frozen=True, slots=True)
class UsageBucket(_Model):
    """One hour or day of a key's verifications (``start`` is UTC), by outcome: grant
    codes such as ``VALID`` or ``RATE_LIMITED``."""

    start: datetime
    total: int
    outcomes: Mapping[str, int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageBucket:
        outcomes = data.get("outcomes") or {}
        return cls(
            start=_required_time(data["start"]),
            total=int(data["total"]),
            outcomes={str(code): int(count) for code, count in outcomes.items()},
        )


@dataclass(frozen=True, slots=True)
class Usage(_Model):
    """A key's verifications per hour or day (``interval``), oldest bucket first."""

    key_id: str
    interval: str
    buckets: tuple[UsageBucket, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        return cls(
            key_id=data["key_id"],
            interval=data["interval"],
            buckets=tuple(UsageBucket.from_json(bucket) for bucket in data.get("buckets") or ()),
        )

    def __iter__(self) -> Iterator[UsageBucket]:
        return iter(self.buckets)


@dataclass(frozen=True, slots=True)
class Allowance(_Model):
    """Where a key stands against its rate limit or quota: ``reset`` None means never."""

    limit: int
    remaining: int
    reset: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> Allowance | None:
        if not isinstance(data, Mapping):
            return None
        return cls(int(data["limit"]), int(data["remaining"]), _time(data.get("reset")))


@dataclass(frozen=True, slots=True)
class VerifyResult(_Model):
    """The answer of ``POST /api/v1/verify``. It never holds the key that was checked.

    ``valid`` says whether the key grants the request and ``code`` why not. For
    ``VALID`` and ``INSUFFICIENT_SCOPE`` the key's details are filled in; for
    other codes only ``key_id`` may be.
    """

    valid: bool
    code: str
    key_id: str | None = None
    name: str | None = None
    project_id: str | None = None
    organization_id: str | None = None
    scopes: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] | None = None
    expires_at: datetime | None = None
    missing_scopes: tuple[str, ...] | None = None
    #: The key's rate limit and usage quota after this call, if it has them.
    rate_limit: Allowance | None = None
    quota: Allowance | None = None
    #: Seconds to wait, for ``RATE_LIMITED``/``USAGE_EXCEEDED`` (None: no wait helps).
    retry_after: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifyResult:
        scopes = data.get("scopes")
        missing = data.get("missing_scopes")
        metadata = data.get("metadata")
        rate_limit = Allowance.from_json(data.get("rate_limit"))
        quota = Allowance.from_json(data.get("quota"))
        exhausted = quota if data["code"] == "USAGE_EXCEEDED" else rate_limit
        retry_after = None
        if exhausted is not None and exhausted.reset is not None:
            retry_after = max(0.0, (exhausted.reset - datetime.now(UTC)).total_seconds())
        return cls(
            valid=bool(data["valid"]),
            code=str(data["code"]),
            key_id=data.get("key_id"),
            name=data.get("name"),
            project_id=data.get("project_id"),
            organization_id=data.get("organization_id"),
            scopes=_strings(scopes) if scopes is not None else None,
            metadata=dict(metadata) if metadata is not None else None,
            expires_at=_time(data.get("expires_at")),
            missing_scopes=_strings(missing) if missing is not None else None,
            rate_limit=rate_limit,
            quota=quota,
            retry_after=retry_after,
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: ``items``, and ``next_cursor`` (None on the last page)."""

    items: tuple[T, ...]
    next_cursor: str | None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class Webhook(_Model):
    """A webhook endpoint (docs/webhooks.md); its secret is never in it."""

    id: str
    organization_id: str
    url: str
    description: str
    event_types: tuple[str, ...]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    consecutive_failures: int
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Webhook:
        return cls(
            id=data["id"],
            organization_id=data["organization_id"],
            url=data["url"],
            description=data.get("description") or "",
            event_types=_strings(data.get("event_types")),
            enabled=bool(data["enabled"]),
            disabled_reason=data.get("disabled_reason"),
            disabled_at=_time(data.get("disabled_at")),
            created_at=_required_time(data["created_at"]),
            created_by=data["created_by"],
            updated_at=_required_time(data["updated_at"]),
            consecutive_failures=int(data.get("consecutive_failures") or 0),
            failing_since=_time(data.get("failing_since")),
            previous_secret_expires_at=_time(data.get("previous_secret_expires_at")),
        )


@dataclass(frozen=True, slots=True)
class CreatedWebhook(_Model):
    """A new endpoint (or a rotated secret) with its signing secret: shown this once.
    The ``repr`` leaves the secret out."""

    endpoint: Webhook
    secret: str = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreatedWebhook:
        return cls(endpoint=Webhook.from_json(data["endpoint"]), secret=str(data["secret"]))


@dataclass(frozen=True, slots=True)
class WebhookDelivery(_Model):
    """One event to one endpoint: ``pending``, ``delivered``, ``failed`` or ``cancelled``."""

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    replay: int
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookDelivery:
        return cls(
            id=data["id"],
            endpoint_id=data["endpoint_id"],
            event_id=data["event_id"],
            event_type=data["event_type"],
            replay=int(data.get("replay") or 0),
            status=data["status"],
            attempts=int(data.get("attempts") or 0),
            created_at=_required_time(data["created_at"]),
            next_attempt_at=_time(data.get("next_attempt_at")),
            delivered_at=_time(data.get("delivered_at")),
            last_status_code=data.get("last_status_code"),
            last_error=data.get("last_error"),
            last_latency_ms=data.get("last_latency_ms"),
        )


@dataclass(frozen=True, slots=True)
class WebhookAttempt(_Model):
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookAttempt:
        return cls(
            attempted_at=_required_time(data["attempted_at"]),
            status_code=data.get("status_code"),
            latency_ms=int(data.get("latency_ms") or 0),
            error=data.get("error"),
            response_excerpt=data.get("response_excerpt"),
        )


@dataclass(frozen=True, slots=True)
class WebhookDeliveryDetail(_Model):
    """A delivery with its attempts (newest first) and the body they sent."""

    delivery: WebhookDelivery
    attempts: tuple[WebhookAttempt, ...]
    payload: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookDeliveryDetail:
        return cls(
            delivery=WebhookDelivery.from_json(data["delivery"]),
            attempts=tuple(WebhookAttempt.from_json(item) for item in data.get("attempts") or ()),
            payload=dict(data.get("payload") or {}),
        )


__all__ = [
    "Allowance",
    "AuditEvent",
    "CreatedKey",
    "CreatedWebhook",
    "Key",
    "Page",
    "Project",
    "Quota",
    "QuotaStatus",
    "RateLimit",
    "Usage",
    "UsageBucket",
    "VerifyResult",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryDetail",
    "WhoAmI",
]


@dataclass(frozen=True, slots=True)
class KeyPolicy(_Model):
    """An organization's key policies (``None``/``False``: no such policy); see
    docs/policies.md."""

    max_lifetime_seconds: int | None
    default_expiry_seconds: int | None
    stale_days: int | None
    stale_disable: bool
    stale_revoke_days: int | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyPolicy:
        return cls(
            max_lifetime_seconds=data.get("max_lifetime_seconds"),
            default_expiry_seconds=data.get("default_expiry_seconds"),
            stale_days=data.get("stale_days"),
            stale_disable=bool(data.get("stale_disable")),
            stale_revoke_days=data.get("stale_revoke_days"),
        )


@dataclass(frozen=True, slots=True)
class TouchedKey(_Model):
    """A key a policy dry run would touch."""

    id: str
    name: str
    hint: str
    project_id: str
    expires_at: datetime | None
    last_activity: datetime
    acts_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TouchedKey:
        return cls(
            id=data["id"],
            name=data["name"],
            hint=data["hint"],
            project_id=data["project_id"],
            expires_at=_time(data.get("expires_at")),
            last_activity=_required_time(data["last_activity"]),
            acts_at=_time(data.get("acts_at")),
        )


@dataclass(frozen=True, slots=True)
class DryRunGroup(_Model):
    """The keys of one action (``disable``, ``warn``...): how many, and the first 100."""

    action: str
    description: str
    total: int
    keys: tuple[TouchedKey, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DryRunGroup:
        return cls(
            action=data["action"],
            description=data["description"],
            total=int(data["total"]),
            keys=tuple(TouchedKey.from_json(item) for item in data.get("keys") or ()),
        )


@dataclass(frozen=True, slots=True)
class PolicyDryRun(_Model):
    """What a proposed policy (not saved) would touch at the next scan."""

    policy: KeyPolicy
    at: datetime
    groups: tuple[DryRunGroup, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyDryRun:
        return cls(
            policy=KeyPolicy.from_json(data["policy"]),
            at=_required_time(data["at"]),
            groups=tuple(DryRunGroup.from_json(item) for item in data.get("groups") or ()),
        )
