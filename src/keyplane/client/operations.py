"""Every call of the management API as an :class:`Operation` value.

The sync and async clients run the same operations, so both cover the same
API with the same arguments and answers; only the sending differs. Each
function here is also the method users call (``client.keys.create`` is
:func:`create_key`, bound in ``_resources.py``): its signature, checks and
docstring are the method's. ``tests/client/test_contract.py`` checks that
they reach every operation and field of ``/api/v1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Generic, Literal, TypeVar

from keyplane.client._http import Operation, query, segment
from keyplane.client.models import (
    AuditEvent,
    CreatedKey,
    CreatedWebhook,
    Event,
    EventType,
    Key,
    KeyCallers,
    KeyPolicy,
    Page,
    PolicyDryRun,
    Project,
    Quota,
    RateLimit,
    Usage,
    VerifyResult,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryDetail,
    WhoAmI,
)
from keyplane.core.keys import SecretKey


class _NotGiven:
    """Marks an argument left out (distinct from None, which can mean "clear it")."""

    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Final = _NotGiven()

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pages(Generic[T]):
    """A whole list, read page by page: ``fetch(cursor)`` is the operation for one page."""

    fetch: Callable[[str | None], Operation[Page[T]]]


#: ``/verify`` takes a user agent of at most 512 characters (docs/api.md); user
#: agents can be longer, and a check must not fail for that.
MAX_USER_AGENT_LENGTH: Final = 512


def _page(parse: Any) -> Any:
    def parse_page(data: Mapping[str, Any]) -> Page[Any]:
        return Page(tuple(parse(item) for item in data["items"]), data.get("next_cursor"))

    return parse_page


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("times sent to Keyplane need a time zone, e.g. datetime.now(UTC)")
    return value.isoformat()


def _duration(value: str | timedelta) -> str:
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        if seconds <= 0:
            raise ValueError("expires_in must be longer than zero")
        return f"{seconds}s"
    return value


def _rate_limit(value: RateLimit | None) -> dict[str, int] | None:
    if value is None:
        return None
    return {"limit": value.limit, "window_seconds": value.window_seconds}


def _quota(value: Quota | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"limit": value.limit, "refill": value.refill}


def whoami() -> Operation[WhoAmI]:
    """The key this client uses: name, id, project, organization, scopes."""
    return Operation("GET", "/whoami", WhoAmI.from_json)


def verify(
    key: str | SecretKey,
    *,
    scopes: Iterable[str] = (),
    client_ip: str | None = None,
    user_agent: str | None = None,
) -> Operation[VerifyResult]:
    """Check a key someone handed you (this client's key needs ``keys:verify``)."""
    value = key.reveal() if isinstance(key, SecretKey) else key
    body: dict[str, Any] = {"key": value, "scopes": list(scopes)}
    if client_ip is not None:
        body["client_ip"] = client_ip
    if user_agent is not None:
        body["user_agent"] = user_agent[:MAX_USER_AGENT_LENGTH]
    # A check changes nothing but a last-used time: safe to send again.
    return Operation("POST", "/verify", VerifyResult.from_json, json=body, idempotent=True)


# -- projects -----------------------------------------------------------------


def list_projects(
    *, limit: int | None = None, cursor: str | None = None
) -> Operation[Page[Project]]:
    """One page of projects, newest first."""
    return Operation(
        "GET", "/projects", _page(Project.from_json), params=query(limit=limit, cursor=cursor)
    )


def get_project(project_id: str) -> Operation[Project]:
    """A project of your organization."""
    return Operation("GET", f"/projects/{segment(project_id, 'project')}", Project.from_json)


def create_project(name: str) -> Operation[Project]:
    """A new project (its name is unique in the organization)."""
    return Operation("POST", "/projects", Project.from_json, json={"name": name})


# -- keys ---------------------------------------------------------------------


def list_keys(
    project_id: str,
    *,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Operation[Page[Key]]:
    """One page of a project's keys, newest first; ``status`` filters (active, revoked...)."""
    return Operation(
        "GET",
        f"/projects/{segment(project_id, 'project')}/keys",
        _page(Key.from_json),
        params=query(status=status, limit=limit, cursor=cursor),
    )


def get_key(key_id: str) -> Operation[Key]:
    """A key's record (never its value)."""
    return Operation("GET", f"/keys/{segment(key_id, 'key')}", Key.from_json)


def create_key(
    project_id: str,
    *,
    name: str,
    scopes: Iterable[str] = (),
    expires_at: datetime | None = None,
    expires_in: str | timedelta | None = None,
    ip_allowlist: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    enabled: bool = True,
    rate_limit: RateLimit | None = None,
    quota: Quota | None = None,
    canary: bool = False,
) -> Operation[CreatedKey]:
    """Create a key. Its value is in ``.key`` (``.key.reveal()``), this once only.

    ``rate_limit=RateLimit(100, 60)`` allows 100 requests a minute;
    ``quota=Quota(10_000, "day")`` allows 10,000 uses a UTC day. A ``canary`` key is
    always refused like an unknown key, and any use raises ``key.canary_used``.
    """
    body: dict[str, Any] = {
        "name": name,
        "scopes": list(scopes),
        "ip_allowlist": list(ip_allowlist),
        "metadata": dict(metadata or {}),
        "enabled": enabled,
    }
    if expires_at is not None:
        body["expires_at"] = _iso(expires_at)
    if expires_in is not None:
        body["expires_in"] = _duration(expires_in)
    if rate_limit is not None:
        body["rate_limit"] = _rate_limit(rate_limit)
    if quota is not None:
        body["quota"] = _quota(quota)
    if canary:
        body["canary"] = True
    return Operation(
        "POST", f"/projects/{segment(project_id, 'project')}/keys", CreatedKey.from_json, json=body
    )


def update_key(
    key_id: str,
    *,
    name: str | _NotGiven = NOT_GIVEN,
    scopes: Iterable[str] | _NotGiven = NOT_GIVEN,
    expires_at: datetime | _NotGiven | None = NOT_GIVEN,
    metadata: Mapping[str, Any] | _NotGiven = NOT_GIVEN,
    enabled: bool | _NotGiven = NOT_GIVEN,
    ip_allowlist: Iterable[str] | _NotGiven = NOT_GIVEN,
    rate_limit: RateLimit | _NotGiven | None = NOT_GIVEN,
    quota: Quota | _NotGiven | None = NOT_GIVEN,
) -> Operation[Key]:
    """Change only the fields given; ``expires_at``, ``rate_limit`` or ``quota`` set to
    None removes the expiry, the rate limit or the quota."""
    body: dict[str, Any] = {}
    if not isinstance(name, _NotGiven):
        body["name"] = name
    if not isinstance(scopes, _NotGiven):
        body["scopes"] = list(scopes)
    if not isinstance(expires_at, _NotGiven):
        body["expires_at"] = _iso(expires_at) if expires_at is not None else None
    if not isinstance(metadata, _NotGiven):
        body["metadata"] = dict(metadata)
    if not isinstance(enabled, _NotGiven):
        body["enabled"] = enabled
    if not isinstance(ip_allowlist, _NotGiven):
        body["ip_allowlist"] = list(ip_allowlist)
    if not isinstance(rate_limit, _NotGiven):
        body["rate_limit"] = _rate_limit(rate_limit)
    if not isinstance(quota, _NotGiven):
        body["quota"] = _quota(quota)
    return Operation("PATCH", f"/keys/{segment(key_id, 'key')}", Key.from_json, json=body)


def revoke_key(key_id: str) -> Operation[Key]:
    """Revoke for good (repeating it is harmless)."""
    return Operation("DELETE", f"/keys/{segment(key_id, 'key')}", Key.from_json)


def key_usage(
    key_id: str,
    *,
    interval: Literal["hour", "day"] = "day",
    since: datetime | None = None,
    until: datetime | None = None,
) -> Operation[Usage]:
    """A key's verifications per UTC hour or day, by outcome, oldest first.

    ``since`` defaults to 30 days (``day``) or 48 hours (``hour``) before ``until``
    (default now); counts lag by about a second.
    """
    return Operation(
        "GET",
        f"/keys/{segment(key_id, 'key')}/usage",
        Usage.from_json,
        params=query(
            interval=interval,
            since=_iso(since) if since is not None else None,
            until=_iso(until) if until is not None else None,
        ),
    )


def roll_key(
    key_id: str, *, grace_period: timedelta | float | None = None
) -> Operation[CreatedKey]:
    """A new key with the same settings; the old one works for ``grace_period`` (24 h)."""
    body: dict[str, Any] | None = None
    if grace_period is not None:
        seconds = (
            grace_period.total_seconds() if isinstance(grace_period, timedelta) else grace_period
        )
        body = {"grace_period_seconds": int(seconds)}
    return Operation(
        "POST", f"/keys/{segment(key_id, 'key')}/roll", CreatedKey.from_json, json=body
    )


# -- audit --------------------------------------------------------------------


def list_audit_events(
    *,
    action: str | None = None,
    key_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Operation[Page[AuditEvent]]:
    """One page of the organization's audit events, newest first."""
    return Operation(
        "GET",
        "/audit-events",
        _page(AuditEvent.from_json),
        params=query(
            action=action,
            key_id=key_id,
            actor=actor,
            since=_iso(since) if since is not None else None,
            until=_iso(until) if until is not None else None,
            limit=limit,
            cursor=cursor,
        ),
    )


# -- events -------------------------------------------------------------------


def list_events(
    *, type: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Operation[Page[Event]]:
    """One page of the organization's events (``key.revoked``...), newest first."""
    return Operation(
        "GET",
        "/events",
        _page(Event.from_json),
        params=query(type=type, limit=limit, cursor=cursor),
    )


def list_event_types() -> Operation[list[EventType]]:
    """Every event type Keyplane raises, with what it means."""
    return Operation("GET", "/event-types", EventType.list_from_json)


def key_callers(key_id: str, *, days: int = 30) -> Operation[KeyCallers]:
    """Who still uses a key: its client IPs and user agents of the last ``days`` (<= 30)."""
    return Operation(
        "GET",
        f"/keys/{segment(key_id, 'key')}/callers",
        KeyCallers.from_json,
        params=query(days=days),
    )


# -- whole lists ----------------------------------------------------------------


# -- key policies ---------------------------------------------------------------


def get_key_policies() -> Operation[KeyPolicy]:
    """The organization's key policies (``policies:read``)."""
    return Operation("GET", "/policies", KeyPolicy.from_json)


def _policy_body(
    max_lifetime_seconds: int | _NotGiven | None,
    default_expiry_seconds: int | _NotGiven | None,
    stale_days: int | _NotGiven | None,
    stale_disable: bool | _NotGiven,
    stale_revoke_days: int | _NotGiven | None,
) -> dict[str, Any]:
    given = {
        "max_lifetime_seconds": max_lifetime_seconds,
        "default_expiry_seconds": default_expiry_seconds,
        "stale_days": stale_days,
        "stale_disable": stale_disable,
        "stale_revoke_days": stale_revoke_days,
    }
    return {name: value for name, value in given.items() if not isinstance(value, _NotGiven)}


def update_key_policies(
    *,
    max_lifetime_seconds: int | _NotGiven | None = NOT_GIVEN,
    default_expiry_seconds: int | _NotGiven | None = NOT_GIVEN,
    stale_days: int | _NotGiven | None = NOT_GIVEN,
    stale_disable: bool | _NotGiven = NOT_GIVEN,
    stale_revoke_days: int | _NotGiven | None = NOT_GIVEN,
) -> Operation[KeyPolicy]:
    """Change only the policies given (None turns one off; ``policies:write``). Preview
    with :func:`dry_run_key_policies` first: the stale-key policy acts at the next scan."""
    body = _policy_body(
        max_lifetime_seconds, default_expiry_seconds, stale_days, stale_disable, stale_revoke_days
    )
    return Operation("PATCH", "/policies", KeyPolicy.from_json, json=body)


def dry_run_key_policies(
    *,
    max_lifetime_seconds: int | _NotGiven | None = NOT_GIVEN,
    default_expiry_seconds: int | _NotGiven | None = NOT_GIVEN,
    stale_days: int | _NotGiven | None = NOT_GIVEN,
    stale_disable: bool | _NotGiven = NOT_GIVEN,
    stale_revoke_days: int | _NotGiven | None = NOT_GIVEN,
) -> Operation[PolicyDryRun]:
    """The keys the saved policies, changed as given, would touch (nothing is saved)."""
    body = _policy_body(
        max_lifetime_seconds, default_expiry_seconds, stale_days, stale_disable, stale_revoke_days
    )
    return Operation("POST", "/policies/dry-run", PolicyDryRun.from_json, json=body)


def iter_projects(*, page_size: int = 100) -> Pages[Project]:
    """Every project, fetching pages as needed."""
    return Pages(lambda cursor: list_projects(limit=page_size, cursor=cursor))


def iter_keys(project_id: str, *, status: str | None = None, page_size: int = 100) -> Pages[Key]:
    """Every key of a project, fetching pages as needed."""
    return Pages(
        lambda cursor: list_keys(project_id, status=status, limit=page_size, cursor=cursor)
    )


def iter_events(*, type: str | None = None, page_size: int = 100) -> Pages[Event]:
    """Every matching event, fetching pages as needed."""
    return Pages(lambda cursor: list_events(type=type, limit=page_size, cursor=cursor))


def iter_audit_events(
    *,
    action: str | None = None,
    key_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = 100,
) -> Pages[AuditEvent]:
    """Every matching audit event, fetching pages as needed."""
    filters: dict[str, Any] = {
        "action": action,
        "key_id": key_id,
        "actor": actor,
        "since": since,
        "until": until,
    }
    return Pages(lambda cursor: list_audit_events(**filters, limit=page_size, cursor=cursor))


# -- webhooks (docs/webhooks.md) --------------------------------------------------


def list_webhooks(
    *, limit: int | None = None, cursor: str | None = None
) -> Operation[Page[Webhook]]:
    """One page of the organization's webhook endpoints, newest first."""
    return Operation(
        "GET", "/webhooks", _page(Webhook.from_json), params=query(limit=limit, cursor=cursor)
    )


def get_webhook(endpoint_id: str) -> Operation[Webhook]:
    """A webhook endpoint of your organization."""
    return Operation("GET", f"/webhooks/{segment(endpoint_id, 'webhook')}", Webhook.from_json)


def create_webhook(
    url: str, *, description: str = "", event_types: Iterable[str] = ()
) -> Operation[CreatedWebhook]:
    """A new endpoint; the answer's ``secret`` (``whsec_...``) is shown this once.
    ``event_types`` empty: every event; ``key.*``: every key event."""
    body = {"url": url, "description": description, "event_types": list(event_types)}
    return Operation("POST", "/webhooks", CreatedWebhook.from_json, json=body, idempotent=False)


def update_webhook(
    endpoint_id: str,
    *,
    url: str | _NotGiven = NOT_GIVEN,
    description: str | _NotGiven = NOT_GIVEN,
    event_types: Iterable[str] | _NotGiven = NOT_GIVEN,
    enabled: bool | _NotGiven = NOT_GIVEN,
) -> Operation[Webhook]:
    """Change what is given; ``enabled=False`` stops deliveries (pending ones are cancelled)."""
    body: dict[str, Any] = {}
    if not isinstance(url, _NotGiven):
        body["url"] = url
    if not isinstance(description, _NotGiven):
        body["description"] = description
    if not isinstance(event_types, _NotGiven):
        body["event_types"] = list(event_types)
    if not isinstance(enabled, _NotGiven):
        body["enabled"] = enabled
    return Operation(
        "PATCH", f"/webhooks/{segment(endpoint_id, 'webhook')}", Webhook.from_json, json=body
    )


def delete_webhook(endpoint_id: str) -> Operation[None]:
    """Delete an endpoint and its delivery log."""
    return Operation("DELETE", f"/webhooks/{segment(endpoint_id, 'webhook')}", lambda _: None)


def rotate_webhook_secret(
    endpoint_id: str, *, overlap: timedelta = timedelta(hours=24)
) -> Operation[CreatedWebhook]:
    """A new signing secret (shown this once); the old one keeps signing for ``overlap``
    (0 to 7 days)."""
    return Operation(
        "POST",
        f"/webhooks/{segment(endpoint_id, 'webhook')}/rotate-secret",
        CreatedWebhook.from_json,
        json={"overlap_seconds": int(overlap.total_seconds())},
        idempotent=False,
    )


def test_webhook(endpoint_id: str) -> Operation[WebhookDelivery]:
    """Send a ``webhook.test`` event to this endpoint only."""
    return Operation(
        "POST",
        f"/webhooks/{segment(endpoint_id, 'webhook')}/test",
        WebhookDelivery.from_json,
        idempotent=False,
    )


def list_webhook_deliveries(
    endpoint_id: str,
    *,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Operation[Page[WebhookDelivery]]:
    """One page of an endpoint's delivery log, newest first; ``status`` filters."""
    return Operation(
        "GET",
        f"/webhooks/{segment(endpoint_id, 'webhook')}/deliveries",
        _page(WebhookDelivery.from_json),
        params=query(status=status, limit=limit, cursor=cursor),
    )


def get_webhook_delivery(delivery_id: str) -> Operation[WebhookDeliveryDetail]:
    """A delivery with its attempts and payload."""
    return Operation(
        "GET",
        f"/webhook-deliveries/{segment(delivery_id, 'delivery')}",
        WebhookDeliveryDetail.from_json,
    )


def replay_webhook_delivery(delivery_id: str) -> Operation[WebhookDelivery]:
    """Send a delivery's event again: a new delivery, due now."""
    return Operation(
        "POST",
        f"/webhook-deliveries/{segment(delivery_id, 'delivery')}/replay",
        WebhookDelivery.from_json,
        idempotent=False,
    )
