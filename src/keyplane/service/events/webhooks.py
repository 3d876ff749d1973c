"""Webhook endpoints of an organization: their URLs, event filters and signing
secrets, the delivery log, replays and test events.

Only owners and admins (or a key with ``webhooks:*`` scopes, checked by the faces)
manage endpoints; creating one, changing its URL, rotating its secret and
deleting it need a recent sign-in (sudo mode), because they decide where the
organization's events go. Every read and write is scoped to the caller's
organization: another organization's endpoint is "not found". Every change is
audited (``webhook.created``, ``webhook.updated``, ``webhook.deleted``,
``webhook.secret_rotated``, ``webhook.replayed``, ``webhook.tested``).

A secret is ``whsec_`` and base64 of 24 random bytes (the Standard Webhooks
form), shown once at creation and rotation and stored sealed
(``service/sealing.py``). After a rotation the old secret keeps signing for the
overlap the caller chose (0 to 7 days, 24 hours by default): each delivery then
carries one signature per secret. URLs are checked by ``outbound.py`` when they
are set and again at each delivery.
"""

from __future__ import annotations

import base64
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from keyplane.core.errors import InvalidInput, ObjectNotFound, StateConflict
from keyplane.core.events import check_event_types
from keyplane.core.ids import is_id, new_id
from keyplane.service.accounts import access
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import record_by
from keyplane.service.events.emit import doorbell, jsonable
from keyplane.service.events.outbound import OutboundClient
from keyplane.service.pagination import check_limit, newest_first, page_of
from keyplane.service.records import Caller, Page
from keyplane.service.sealing import Sealer
from keyplane.storage.database import Database, after_commit
from keyplane.storage.models import (
    Event,
    Organization,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
)

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix, not a secret
SECRET_BYTES: Final = 24
DEFAULT_OVERLAP: Final = timedelta(hours=24)
MAX_OVERLAP: Final = timedelta(days=7)
MAX_ENDPOINTS: Final = 50
MAX_DESCRIPTION: Final = 200


@dataclass(frozen=True, slots=True)
class WebhookEndpointRecord:
    id: str
    organization_id: str
    url: str
    description: str
    event_types: tuple[str, ...]
    enabled: bool
    #: ``failing`` (the deliveries kept failing) or ``user``; None while enabled.
    disabled_reason: str | None
    disabled_at: datetime | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    consecutive_failures: int
    failing_since: datetime | None
    #: Until when a rotated-out secret still signs (None: one secret signs).
    previous_secret_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    """A new endpoint (or a rotated secret) and, once only, its secret."""

    endpoint: WebhookEndpointRecord
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class WebhookAttemptRecord:
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True, slots=True)
class WebhookDeliveryRecord:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    replay: int
    #: ``pending``, ``delivered``, ``failed`` or ``cancelled``.
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None


@dataclass(frozen=True, slots=True)
class WebhookDeliveryDetail:
    delivery: WebhookDeliveryRecord
    attempts: tuple[WebhookAttemptRecord, ...]
    #: The body each attempt sent (its ``timestamp`` is the event's time).
    payload: dict[str, Any]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def payload_of(event: Event) -> dict[str, Any]:
    """The Standard Webhooks body: ``type``, ``timestamp`` (when it happened), ``data``."""
    return {"type": event.type, "timestamp": jsonable(event.occurred_at), "data": event.data}


class WebhookService:
    def __init__(
        self,
        database: Database,
        sealer: Sealer,
        outbound: OutboundClient,
        *,
        clock: Callable[[], datetime],
        sudo: SudoRule,
    ) -> None:
        self._database = database
        self._sealer = sealer
        self._outbound = outbound
        self._clock = clock
        self._sudo = sudo

    # -- endpoints ------------------------------------------------------------------

    def create_endpoint(
        self,
        caller: Caller,
        *,
        url: str,
        description: str = "",
        event_types: Sequence[str] = (),
    ) -> CreatedWebhook:
        access.require_manager(caller, "manage webhooks")
        self._sudo.require(caller, "add a webhook endpoint")
        target = self._outbound.check(url)
        description = _check_description(description)
        types = list(check_event_types(event_types))
        now = self._clock()
        secret = new_secret()
        with self._database.write() as session:
            # The organization's row, locked: two creations at once count one after the
            # other, so the limit holds (SQLite serializes writers anyway).
            session.execute(
                select(Organization.pk)
                .where(Organization.id == caller.organization_id)
                .with_for_update(key_share=True)
            )
            count = session.scalar(
                select(func.count())
                .select_from(WebhookEndpoint)
                .where(WebhookEndpoint.organization_id == caller.organization_id)
            )
            if (count or 0) >= MAX_ENDPOINTS:
                raise StateConflict(
                    f"an organization has at most {MAX_ENDPOINTS} webhook endpoints"
                )
            endpoint = WebhookEndpoint(
                id=new_id("whe"),
                organization_id=caller.organization_id,
                url=target.url,
                description=description,
                event_types=types,
                enabled=True,
                disabled_reason=None,
                disabled_at=None,
                created_at=now,
                created_by=caller.actor.name,
                updated_at=now,
                consecutive_failures=0,
                failing_since=None,
            )
            session.add(endpoint)
            session.add(
                WebhookSecret(
                    endpoint_id=endpoint.id,
                    secret=self._sealer.seal(secret),
                    created_at=now,
                    expires_at=None,
                )
            )
            session.flush()
            record_by(
                session,
                caller,
                "webhook.created",
                ("webhook", endpoint.id),
                at=now,
                details={"host": target.host, "event_types": types},
            )
            return CreatedWebhook(_endpoint_record(session, endpoint, now), secret)

    def list_endpoints(
        self, caller: Caller, *, limit: int = 50, cursor: str | None = None
    ) -> Page[WebhookEndpointRecord]:
        access.require_manager(caller, "see webhooks")
        limit = check_limit(limit)
        query = select(WebhookEndpoint).where(
            WebhookEndpoint.organization_id == caller.organization_id
        )
        query = newest_first(query, WebhookEndpoint.pk, cursor, limit)
        now = self._clock()
        with self._database.read() as session:
            rows = session.scalars(query).all()
            return page_of(rows, limit, lambda row: _endpoint_record(session, row, now))

    def get_endpoint(self, caller: Caller, endpoint_id: str) -> WebhookEndpointRecord:
        access.require_manager(caller, "see webhooks")
        with self._database.read() as session:
            endpoint = _find_endpoint(session, caller.organization_id, endpoint_id)
            return _endpoint_record(session, endpoint, self._clock())

    def update_endpoint(
        self,
        caller: Caller,
        endpoint_id: str,
        *,
        url: str | None = None,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpointRecord:
        access.require_manager(caller, "manage webhooks")
        changes: dict[str, Any] = {}
        host = None
        if url is not None:
            target = self._outbound.check(url)
            changes["url"], host = target.url, target.host
        if description is not None:
            changes["description"] = _check_description(description)
        if event_types is not None:
            changes["event_types"] = list(check_event_types(event_types))
        now = self._clock()
        with self._database.write() as session:
            endpoint = _find_endpoint(session, caller.organization_id, endpoint_id, lock=True)
            if "url" in changes and changes["url"] != endpoint.url:
                self._sudo.require(caller, "change a webhook endpoint's URL")
            else:
                changes.pop("url", None)
            for name, value in changes.items():
                setattr(endpoint, name, value)
            if enabled is True and not endpoint.enabled:
                endpoint.enabled = True
                endpoint.disabled_reason = None
                endpoint.disabled_at = None
                endpoint.consecutive_failures = 0
                endpoint.failing_since = None
                changes["enabled"] = True
            elif enabled is False and endpoint.enabled:
                disable(session, endpoint, "user", now)
                changes["enabled"] = False
            if changes:
                endpoint.updated_at = now
                details: dict[str, Any] = {k: v for k, v in changes.items() if k != "url"}
                if "url" in changes:
                    details["host"] = host
                record_by(
                    session,
                    caller,
                    "webhook.updated",
                    ("webhook", endpoint.id),
                    at=now,
                    details=details,
                )
            return _endpoint_record(session, endpoint, now)

    def delete_endpoint(self, caller: Caller, endpoint_id: str) -> None:
        access.require_manager(caller, "manage webhooks")
        now = self._clock()
        with self._database.write() as session:
            endpoint = _find_endpoint(session, caller.organization_id, endpoint_id, lock=True)
            self._sudo.require(caller, "delete a webhook endpoint")
            delivery_ids = select(WebhookDelivery.id).where(
                WebhookDelivery.endpoint_id == endpoint.id
            )
            session.execute(
                delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids))
            )
            session.execute(
                delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
            )
            session.execute(delete(WebhookSecret).where(WebhookSecret.endpoint_id == endpoint.id))
            session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.pk == endpoint.pk))
            record_by(session, caller, "webhook.deleted", ("webhook", endpoint_id), at=now)

    def rotate_secret(
        self, caller: Caller, endpoint_id: str, *, overlap: timedelta = DEFAULT_OVERLAP
    ) -> CreatedWebhook:
        """A new secret, signing from now; the current one keeps signing for ``overlap``."""
        access.require_manager(caller, "manage webhooks")
        if not timedelta(0) <= overlap <= MAX_OVERLAP:
            raise InvalidInput("the overlap is from 0 seconds to 7 days", field="overlap_seconds")
        now = self._clock()
        secret = new_secret()
        with self._database.write() as session:
            endpoint = _find_endpoint(session, caller.organization_id, endpoint_id, lock=True)
            self._sudo.require(caller, "rotate a webhook endpoint's secret")
            until = now + overlap
            session.execute(
                delete(WebhookSecret).where(
                    WebhookSecret.endpoint_id == endpoint.id, WebhookSecret.expires_at <= now
                )
            )
            for old in session.scalars(
                select(WebhookSecret).where(WebhookSecret.endpoint_id == endpoint.id)
            ):
                if old.expires_at is None or old.expires_at > until:
                    old.expires_at = until
            session.add(
                WebhookSecret(
                    endpoint_id=endpoint.id,
                    secret=self._sealer.seal(secret),
                    created_at=now,
                    expires_at=None,
                )
            )
            endpoint.updated_at = now
            session.flush()
            record_by(
                session,
                caller,
                "webhook.secret_rotated",
                ("webhook", endpoint.id),
                at=now,
                details={"overlap_seconds": int(overlap.total_seconds())},
            )
            return CreatedWebhook(_endpoint_record(session, endpoint, now), secret)

    # -- the delivery log -------------------------------------------------------------

    def list_deliveries(
        self,
        caller: Caller,
        endpoint_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[WebhookDeliveryRecord]:
        access.require_manager(caller, "see webhooks")
        limit = check_limit(limit)
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status is one of {', '.join(STATUSES)}", field="status")
        with self._database.read() as session:
            endpoint = _find_endpoint(session, caller.organization_id, endpoint_id)
            query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
            if status is not None:
                query = query.where(WebhookDelivery.status == status)
            rows = session.scalars(newest_first(query, WebhookDelivery.pk, cursor, limit)).all()
            latencies = _last_latencies(session, [row.id for row in rows[:limit]])
            types: dict[str, str] = {
                event_id: event_type
                for event_id, event_type in session.execute(
                    select(Event.id, Event.type).where(
                        Event.id.in_([row.event_id for row in rows[:limit]])
                    )
                )
            }
            return page_of(
                rows,
                limit,
                lambda row: _delivery_record(row, types.get(row.event_id, "?"), latencies),
            )

    def get_delivery(self, caller: Caller, delivery_id: str) -> WebhookDeliveryDetail:
        access.require_manager(caller, "see webhooks")
        with self._database.read() as session:
            delivery, event = _find_delivery(session, caller.organization_id, delivery_id)
            attempts = session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery.id)
                .order_by(WebhookAttempt.pk.desc())
                .limit(100)
            ).all()
            latencies = {delivery.id: attempts[0].latency_ms} if attempts else {}
            return WebhookDeliveryDetail(
                _delivery_record(delivery, event.type, latencies),
                tuple(
                    WebhookAttemptRecord(
                        a.attempted_at, a.status_code, a.latency_ms, a.error, a.response_excerpt
                    )
                    for a in attempts
                ),
                payload_of(event),
            )

    def replay(self, caller: Caller, delivery_id: str) -> WebhookDeliveryRecord:
        """Send a delivery's event again to its endpoint: a new delivery, due now."""
        access.require_manager(caller, "replay webhook deliveries")
        now = self._clock()
        with self._database.write() as session:
            delivery, event = _find_delivery(session, caller.organization_id, delivery_id)
            endpoint = _find_endpoint(
                session, caller.organization_id, delivery.endpoint_id, lock=True
            )
            if not endpoint.enabled:
                raise StateConflict("the endpoint is disabled: enable it before replaying")
            highest = session.scalar(
                select(func.max(WebhookDelivery.replay)).where(
                    WebhookDelivery.endpoint_id == endpoint.id,
                    WebhookDelivery.event_id == event.id,
                )
            )
            replayed = new_delivery(endpoint, event.id, now, replay=(highest or 0) + 1)
            session.add(replayed)
            session.flush()
            record_by(
                session,
                caller,
                "webhook.replayed",
                ("webhook", endpoint.id),
                at=now,
                details={"delivery_id": replayed.id, "of": delivery.id, "event_id": event.id},
            )
            after_commit(session, doorbell.ring)
            return _delivery_record(replayed, event.type, {})

    def send_test(self, caller: Caller, endpoint_id: str) -> WebhookDeliveryRecord:
        """A ``webhook.test`` event for this endpoint only (not fanned out to others)."""
        access.require_manager(caller, "test webhooks")
        now = self._clock()
        with self._database.write() as session:
            endpoint = _find_endpoint(session, caller.organization_id, endpoint_id)
            if not endpoint.enabled:
                raise StateConflict("the endpoint is disabled: enable it before testing it")
            event = Event(
                id=new_id("msg"),
                organization_id=caller.organization_id,
                type="webhook.test",
                occurred_at=now,
                data=jsonable(
                    {
                        "organization_id": caller.organization_id,
                        "actor": caller.actor.name,
                        "webhook": {"id": endpoint.id},
                        "details": {},
                    }
                ),
                dispatched_at=now,  # delivered to this endpoint only, never fanned out
            )
            session.add(event)
            session.flush()
            delivery = new_delivery(endpoint, event.id, now)
            session.add(delivery)
            session.flush()
            record_by(
                session,
                caller,
                "webhook.tested",
                ("webhook", endpoint.id),
                at=now,
                details={"delivery_id": delivery.id},
            )
            after_commit(session, doorbell.ring)
            return _delivery_record(delivery, event.type, {})


STATUSES: Final = ("pending", "delivered", "failed", "cancelled")


def new_delivery(
    endpoint: WebhookEndpoint, event_id: str, now: datetime, *, replay: int = 0
) -> WebhookDelivery:
    return WebhookDelivery(
        id=new_id("whd"),
        organization_id=endpoint.organization_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        replay=replay,
        status="pending",
        created_at=now,
        attempts=0,
        next_attempt_at=now,
    )


def disable(session: Session, endpoint: WebhookEndpoint, reason: str, now: datetime) -> None:
    """Turn ``endpoint`` off and cancel its pending deliveries (a replay can send them
    again once it is enabled)."""
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.disabled_at = now
    endpoint.updated_at = now
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
        .values(
            status="cancelled",
            claimed_by=None,
            claimed_until=None,
            last_error=f"cancelled: the endpoint was disabled ({reason})",
        )
        .execution_options(synchronize_session=False)
    )


def _check_description(description: str) -> str:
    if not isinstance(description, str):
        raise InvalidInput("the description is text", field="description")
    description = description.strip()
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"the description is at most {MAX_DESCRIPTION} characters", field="description"
        )
    if any(unicodedata.category(char) in {"Cc", "Cf", "Cs"} for char in description):
        raise InvalidInput("the description cannot contain control characters", field="description")
    return description


def _find_endpoint(
    session: Session, organization_id: str, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint:
    if not is_id(endpoint_id, "whe"):
        raise ObjectNotFound("webhook endpoint", endpoint_id)
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.organization_id == organization_id
    )
    if lock:
        query = query.with_for_update(key_share=True)
    endpoint = session.scalar(query)
    if endpoint is None:
        raise ObjectNotFound("webhook endpoint", endpoint_id)
    return endpoint


def _find_delivery(
    session: Session, organization_id: str, delivery_id: str
) -> tuple[WebhookDelivery, Event]:
    if not is_id(delivery_id, "whd"):
        raise ObjectNotFound("webhook delivery", delivery_id)
    row = session.execute(
        select(WebhookDelivery, Event)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.organization_id == organization_id,
        )
    ).first()
    if row is None:
        raise ObjectNotFound("webhook delivery", delivery_id)
    return row[0], row[1]


def _endpoint_record(
    session: Session, endpoint: WebhookEndpoint, now: datetime
) -> WebhookEndpointRecord:
    overlap = session.scalar(
        select(func.max(WebhookSecret.expires_at)).where(
            WebhookSecret.endpoint_id == endpoint.id, WebhookSecret.expires_at > now
        )
    )
    return WebhookEndpointRecord(
        id=endpoint.id,
        organization_id=endpoint.organization_id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=tuple(endpoint.event_types),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        disabled_at=endpoint.disabled_at,
        created_at=endpoint.created_at,
        created_by=endpoint.created_by,
        updated_at=endpoint.updated_at,
        consecutive_failures=endpoint.consecutive_failures,
        failing_since=endpoint.failing_since,
        previous_secret_expires_at=overlap,
    )


def _last_latencies(session: Session, delivery_ids: list[str]) -> dict[str, int]:
    if not delivery_ids:
        return {}
    newest = (
        select(func.max(WebhookAttempt.pk))
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .group_by(WebhookAttempt.delivery_id)
    )
    rows = session.execute(
        select(WebhookAttempt.delivery_id, WebhookAttempt.latency_ms).where(
            WebhookAttempt.pk.in_(newest)
        )
    ).all()
    return {delivery_id: latency for delivery_id, latency in rows}


def _delivery_record(
    delivery: WebhookDelivery, event_type: str, latencies: dict[str, int]
) -> WebhookDeliveryRecord:
    return WebhookDeliveryRecord(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=event_type,
        replay=delivery.replay,
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        delivered_at=delivery.delivered_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        last_latency_ms=latencies.get(delivery.id),
    )


def host_of(url: str) -> str:
    """The host of a stored URL (what logs and audit events name instead of the URL,
    whose path or query may hold a receiver's token)."""
    return urlsplit(url).hostname or "?"
