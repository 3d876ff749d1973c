"""The delivery worker: sends pending webhook deliveries, signed the Standard
Webhooks way, and keeps the delivery log.

A small pool of threads (``KEYPLANE_WEBHOOK_WORKERS``, 4 by default) claims due
deliveries one at a time with a lease, as the mail outbox does: a conditional
``UPDATE ... WHERE status = 'pending' AND (claimed_until IS NULL OR claimed_until
< now)`` that one worker of one instance wins, so each delivery is attempted by
exactly one worker at a time (one that dies mid-send leaves it to another after
:data:`LEASE`, longer than any request can take). Sending happens outside any
transaction, through ``outbound.py``: a receiver that hangs holds one thread for
at most its deadline, and nothing an API call or a key check waits for.

Each attempt is recorded (``webhook_attempts``). A 2xx answer delivers; anything
else (another status, a redirect, a timeout, a refused address) is retried after
:func:`~keyplane.service.backoff.backoff` (30 s, doubling, at most 2 h) until
:data:`GIVE_UP_AFTER` after the delivery was made, then it is ``failed``.

Endpoint health: a success resets ``consecutive_failures``; a failure counts. Once
an endpoint has failed ``KEYPLANE_WEBHOOK_DISABLE_AFTER_FAILURES`` times in a row
and the first of them is older than ``KEYPLANE_WEBHOOK_DISABLE_AFTER``, it is
disabled (``failing``), its pending deliveries are cancelled, and a
``webhook.endpoint_disabled`` event is raised (mailed to the owners and admins;
the disabled endpoint itself never receives it).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from keyplane.service.backoff import backoff
from keyplane.service.events.emit import doorbell, emit
from keyplane.service.events.outbound import OutboundClient, OutboundResult
from keyplane.service.events.webhooks import disable, host_of, payload_of
from keyplane.service.sealing import SealBroken, Sealer
from keyplane.service.workers import Loop
from keyplane.storage.database import Database, WriteConflict
from keyplane.storage.models import (
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
)

logger = logging.getLogger("keyplane.webhooks")

#: Longer than the outbound deadline, so a live worker never loses its claim.
LEASE: Final = timedelta(minutes=2)
GIVE_UP_AFTER: Final = timedelta(hours=24)
FIRST_RETRY: Final = timedelta(seconds=30)
MAX_RETRY_INTERVAL: Final = timedelta(hours=2)
POLL_INTERVAL: Final = 1.0
CANDIDATES: Final = 8


@dataclass(frozen=True, slots=True)
class _Job:
    delivery_pk: int
    delivery_id: str
    endpoint_id: str
    url: str
    created_at: datetime
    attempts: int
    event_id: str
    body: str
    #: Opened signing secrets: never in a repr.
    secrets: tuple[str, ...] = field(repr=False)


class DeliveryWorker:
    def __init__(
        self,
        database: Database,
        sealer: Sealer,
        outbound: OutboundClient,
        *,
        clock: Callable[[], datetime],
        workers: int = 4,
        disable_after_failures: int = 15,
        disable_after: timedelta = timedelta(hours=24),
        poll_interval: float = POLL_INTERVAL,
        user_agent: str = "Keyplane-Webhooks",
    ) -> None:
        self._database = database
        self._sealer = sealer
        self._outbound = outbound
        self._clock = clock
        self._disable_after_failures = disable_after_failures
        self._disable_after = disable_after
        self._user_agent = user_agent
        self._loop = Loop(
            "webhook delivery",
            self._step,
            interval=poll_interval,
            logger=logger,
            threads=workers,
            doorbell=doorbell,
        )
        self._instance = self._loop.worker

    # -- one delivery ----------------------------------------------------------------

    def run_once(self) -> int:
        """Attempt every due delivery, one after the other, in this thread (tests, the
        CLI); how many were attempted."""
        worker = f"{self._instance}:once"
        done = 0
        while (pk := self._claim(worker)) is not None:
            self._attempt(pk, worker)
            done += 1
        return done

    def _claim(self, worker: str) -> int | None:
        now = self._clock()
        # Look in a read transaction first: an idle poll takes no write lock (on SQLite,
        # the one writer lock every API change also needs).
        with self._database.read() as session:
            if session.scalars(self._due(now).limit(1)).first() is None:
                return None
        with self._database.write() as session:
            due = session.scalars(self._due(now).limit(CANDIDATES)).all()
            for pk in due:
                result = session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.pk == pk,
                        WebhookDelivery.status == "pending",
                        or_(
                            WebhookDelivery.claimed_until.is_(None),
                            WebhookDelivery.claimed_until < now,
                        ),
                    )
                    .values(claimed_by=worker, claimed_until=now + LEASE)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    return pk
        return None

    @staticmethod
    def _due(now: datetime) -> Select[int]:
        return (
            select(WebhookDelivery.pk)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                or_(
                    WebhookDelivery.claimed_until.is_(None),
                    WebhookDelivery.claimed_until < now,
                ),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.pk)
        )

    def _attempt(self, pk: int, worker: str) -> None:
        job = self._job(pk, worker)
        if job is None:
            return
        signed_at = datetime.now(UTC)  # the receiver compares it with its own clock
        headers = {
            "webhook-id": job.event_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": " ".join(
                Webhook(secret).sign(job.event_id, signed_at, job.body) for secret in job.secrets
            ),
            "content-type": "application/json",
            "user-agent": self._user_agent,
        }
        result = self._outbound.post(job.url, job.body.encode(), headers)
        with contextlib.suppress(WriteConflict):  # the endpoint was deleted meanwhile
            self._record(job, worker, result)
        if not result.ok:
            logger.info(
                "webhook delivery %s to %s failed: %s",
                job.delivery_id,
                host_of(job.url),
                result.error or f"status {result.status_code}",
            )

    def _job(self, pk: int, worker: str) -> _Job | None:
        now = self._clock()
        with self._database.write() as session:
            row = session.execute(
                select(WebhookDelivery, WebhookEndpoint, Event)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.pk == pk)
            ).first()
            if row is None:
                return None
            delivery, endpoint, event = row
            if delivery.claimed_by != worker or delivery.status != "pending":
                return None
            if not endpoint.enabled:
                delivery.status = "cancelled"
                delivery.claimed_by = delivery.claimed_until = None
                delivery.last_error = "cancelled: the endpoint is disabled"
                return None
            sealed = session.scalars(
                select(WebhookSecret.secret)
                .where(
                    WebhookSecret.endpoint_id == endpoint.id,
                    or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now),
                )
                .order_by(WebhookSecret.pk.desc())
            ).all()
            opened = []
            for secret in sealed:
                try:
                    opened.append(self._sealer.open(secret))
                except SealBroken:
                    logger.warning("webhook endpoint %s: a secret cannot be opened", endpoint.id)
            if not opened:
                delivery.status = "failed"
                delivery.claimed_by = delivery.claimed_until = None
                delivery.last_error = "no usable signing secret (rotate the endpoint's secret)"
                return None
            body = json.dumps(payload_of(event), separators=(",", ":"), ensure_ascii=False)
            return _Job(
                delivery.pk,
                delivery.id,
                endpoint.id,
                endpoint.url,
                delivery.created_at,
                delivery.attempts,
                event.id,
                body,
                tuple(opened),
            )

    def _record(self, job: _Job, worker: str, result: OutboundResult) -> None:
        now = self._clock()
        error = _storable(result.error)
        with self._database.write() as session:
            endpoint = session.scalar(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.id == job.endpoint_id)
                .with_for_update(key_share=True)
            )
            if endpoint is None:
                return
            session.add(
                WebhookAttempt(
                    delivery_id=job.delivery_id,
                    attempted_at=now,
                    status_code=result.status_code,
                    latency_ms=result.latency_ms,
                    error=error,
                    response_excerpt=_storable(result.excerpt),
                )
            )
            attempts = job.attempts + 1
            values: dict[str, object] = {
                "attempts": attempts,
                "claimed_by": None,
                "claimed_until": None,
                "last_status_code": result.status_code,
                "last_error": error,
            }
            if result.ok:
                values.update(status="delivered", delivered_at=now)
                endpoint.consecutive_failures = 0
                endpoint.failing_since = None
            else:
                retry_at = now + backoff(attempts, first=FIRST_RETRY, cap=MAX_RETRY_INTERVAL)
                if retry_at > job.created_at + GIVE_UP_AFTER:
                    values["status"] = "failed"
                else:
                    values["next_attempt_at"] = retry_at
            session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.pk == job.delivery_pk,
                    WebhookDelivery.claimed_by == worker,
                    WebhookDelivery.status == "pending",
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if not result.ok and endpoint.enabled:
                self._count_failure(session, endpoint, now, error)

    def _count_failure(
        self, session: Session, endpoint: WebhookEndpoint, now: datetime, error: str | None
    ) -> None:
        endpoint.consecutive_failures += 1
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        if (
            endpoint.consecutive_failures >= self._disable_after_failures
            and now - endpoint.failing_since >= self._disable_after
        ):
            disable(session, endpoint, "failing", now)
            emit(
                session,
                organization_id=endpoint.organization_id,
                event_type="webhook.endpoint_disabled",
                at=now,
                data={
                    "organization_id": endpoint.organization_id,
                    "actor": "system",
                    "webhook": {
                        "id": endpoint.id,
                        "host": host_of(endpoint.url),
                        "description": endpoint.description,
                    },
                    "details": {
                        "consecutive_failures": endpoint.consecutive_failures,
                        "failing_since": endpoint.failing_since,
                        "last_error": error,
                    },
                },
            )
            logger.warning(
                "webhook endpoint %s (%s) disabled after %d failed attempts in a row",
                endpoint.id,
                host_of(endpoint.url),
                endpoint.consecutive_failures,
            )

    # -- the threads ---------------------------------------------------------------

    def _step(self, worker: str) -> bool:
        pk = self._claim(worker)
        if pk is None:
            return False
        self._attempt(pk, worker)
        return True

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()


def _storable(text: str | None) -> str | None:
    """``text`` without NUL (PostgreSQL refuses it in text) and lone surrogates."""
    if text is None:
        return None
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
