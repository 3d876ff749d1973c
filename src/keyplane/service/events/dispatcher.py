"""The dispatcher: fans each committed event out, exactly once, to webhook
deliveries (and, through ``extra_fanout``, to mail).

A worker thread wakes on :data:`~keyplane.service.events.emit.doorbell` (events
committed in this process) and polls every :data:`POLL_INTERVAL` for other
instances' events. It claims undispatched events in one transaction, each with a
conditional ``UPDATE events SET dispatched_at = now WHERE pk = ? AND dispatched_at
IS NULL``: on PostgreSQL a second instance's UPDATE waits for the first one's row
lock, then finds the row taken (rowcount 0), so exactly one instance fans an event
out; on SQLite the write transaction is exclusive anyway. The deliveries are
written in the **same** transaction, so an event is dispatched if and only if its
deliveries exist. Events are claimed in ``pk`` order, so two instances lock rows
in the same order and cannot deadlock.

Dispatched events older than :data:`KEEP_EVENTS` are deleted (with their
deliveries and attempts) now and then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from keyplane.core.events import matches
from keyplane.service.events.emit import doorbell
from keyplane.service.events.webhooks import new_delivery
from keyplane.service.workers import Loop
from keyplane.storage.database import Database, after_commit
from keyplane.storage.models import Event, WebhookEndpoint

logger = logging.getLogger("keyplane.webhooks")

POLL_INTERVAL: Final = 1.0
BATCH: Final = 100
KEEP_EVENTS: Final = timedelta(days=30)
PRUNE_EVERY: Final = timedelta(hours=1)

Fanout = Callable[[Session, Event], None]


class Dispatcher:
    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime],
        extra_fanout: Sequence[Fanout] = (),
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._database = database
        self._clock = clock
        self._extra_fanout = tuple(extra_fanout)
        self._pruned_at: datetime | None = None
        self._loop = Loop(
            "webhook dispatcher",
            self._step,
            interval=poll_interval,
            logger=logger,
            doorbell=doorbell,
        )

    def run_once(self) -> int:
        """Fan out one batch of undispatched events; how many this instance took."""
        # An idle poll reads only: no write lock (SQLite's one writer) unless there is work.
        with self._database.read() as session:
            if (
                session.scalar(select(Event.pk).where(Event.dispatched_at.is_(None)).limit(1))
                is None
            ):
                return 0
        with self._database.write() as session:
            pending = session.scalars(
                select(Event.pk)
                .where(Event.dispatched_at.is_(None))
                .order_by(Event.pk)
                .limit(BATCH)
            ).all()
            if not pending:
                return 0
            now = self._clock()
            claimed = []
            for pk in pending:
                result = session.execute(
                    update(Event)
                    .where(Event.pk == pk, Event.dispatched_at.is_(None))
                    .values(dispatched_at=now)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    claimed.append(pk)
            if not claimed:
                return 0
            events = session.scalars(
                select(Event).where(Event.pk.in_(claimed)).order_by(Event.pk)
            ).all()
            organizations = {event.organization_id for event in events}
            endpoints: dict[str, list[WebhookEndpoint]] = {}
            for endpoint in session.scalars(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.organization_id.in_(organizations),
                    WebhookEndpoint.enabled.is_(True),
                )
            ):
                endpoints.setdefault(endpoint.organization_id, []).append(endpoint)
            for event in events:
                for endpoint in endpoints.get(event.organization_id, ()):
                    if matches(endpoint.event_types, event.type):
                        session.add(new_delivery(endpoint, event.id, now))
                for fanout in self._extra_fanout:
                    fanout(session, event)
            after_commit(session, doorbell.ring)
            return len(claimed)

    def prune(self) -> int:
        """Delete events dispatched more than :data:`KEEP_EVENTS` ago."""
        now = self._clock()
        with self._database.write() as session:
            result = session.execute(
                delete(Event)
                .where(Event.dispatched_at.is_not(None), Event.dispatched_at < now - KEEP_EVENTS)
                .execution_options(synchronize_session=False)
            )
            self._pruned_at = now
            return int(getattr(result, "rowcount", 0) or 0)

    # -- the worker thread ---------------------------------------------------------

    def _step(self, worker: str) -> bool:
        done = self.run_once()
        if not done and (self._pruned_at is None or self._clock() - self._pruned_at > PRUNE_EVERY):
            self.prune()
        return done > 0

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
