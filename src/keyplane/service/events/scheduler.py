"""The key scheduler: one scan, every ``KEYPLANE_SCHEDULER_INTERVAL`` seconds, for keys
that expire soon, keys that expired, and the stale-key policy of each organization.

Every instance runs it. On PostgreSQL a scan first takes a session advisory lock
(``pg_try_advisory_lock``); an instance that does not get it skips this round, so
one instance scans at a time. SQLite has one instance (its writers are serialized
by ``BEGIN IMMEDIATE`` anyway). What makes each event happen once is not the lock
but ``key_notices``: a notice (key, kind, bucket) is inserted with ``ON CONFLICT
DO NOTHING`` in the transaction that raises its event, and the event is raised
only for the rows this transaction inserted.

The scans are set-based and batched: indexed range queries on ``expires_at`` and
``(organization_id, last_used_at)``, :data:`BATCH` keys per transaction, keyset
pagination; memory stays bounded whatever the number of keys.

Time is injectable: :meth:`Scheduler.run_once` takes ``now`` (the tests and
``keyplane admin scan-keys --now``), else it asks ``Services.clock``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, text, true
from sqlalchemy.orm import Session, aliased

from keyplane.service.events.emit import emit_key_event
from keyplane.service.events.notices import claim_notices
from keyplane.service.events.policies import (
    WARNING_DAYS,
    KeyPolicy,
    Stage,
    last_activity,
    policy_of,
    stale_condition,
)
from keyplane.service.keys.lifecycle import KeyService
from keyplane.service.keys.queries import locked
from keyplane.service.records import Actor
from keyplane.service.workers import Loop
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey, Organization

logger = logging.getLogger("keyplane.scheduler")

#: The advisory lock of the scan on PostgreSQL (any constant; "kpsc"), with the schema.
ADVISORY_LOCK: Final = 0x6B707363
#: Keys per transaction.
BATCH: Final = 500
#: Keys that expired longer ago than this are not announced (bounds the scan).
EXPIRED_LOOKBACK: Final = timedelta(days=7)
#: Who acts for the policies in the audit log.
POLICY_ACTOR: Final = Actor("policy")
_SUCCESSOR: Final = aliased(ApiKey)
# The second half of the lock is the schema: Keyplanes sharing one database in
# separate schemas do not hold each other up.
LOCK: Final = text("SELECT pg_try_advisory_lock(:key, hashtext(current_schema()))")
UNLOCK: Final = text("SELECT pg_advisory_unlock(:key, hashtext(current_schema()))")


@dataclass
class ScanReport:
    """What one scan did (counts of events raised and keys changed)."""

    at: datetime
    #: False when another instance held the lock: this one did nothing.
    ran: bool = True
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, count: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + count


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class Scheduler:
    """Scans for expiring, expired and stale keys; a thread runs it every ``interval``."""

    def __init__(
        self,
        database: Database,
        keys: KeyService,
        *,
        clock: Callable[[], datetime],
        interval: float = 60.0,
    ) -> None:
        self._database = database
        self._keys = keys
        self._clock = clock
        self._interval = interval
        self._loop = Loop("scheduler", self._step, interval=interval, logger=logger)

    # -- one scan ------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> ScanReport:
        """One scan at ``now`` (default: the clock). On PostgreSQL it does nothing, and
        says so (``ran=False``), while another instance scans."""
        now = now or self._clock()
        engine = self._database.engine
        if engine.dialect.name != "postgresql":
            return self._scan(now)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            got = connection.scalar(LOCK, {"key": ADVISORY_LOCK})
            if not got:
                return ScanReport(now, ran=False)
            try:
                return self._scan(now)
            finally:
                connection.execute(UNLOCK, {"key": ADVISORY_LOCK})

    def _scan(self, now: datetime) -> ScanReport:
        report = ScanReport(now)
        self._expiry(report, now)
        for organization_id in self._organizations_with_stale_policy():
            self._stale(report, organization_id, now)
        return report

    # -- expiry ----------------------------------------------------------------------

    def _expiry(self, report: ScanReport, now: datetime) -> None:
        day = timedelta(days=1)
        windows: tuple[tuple[str, str, datetime, datetime, dict[str, int]], ...] = (
            ("expiring_1d", "key.expiring", now, now + day, {"expires_in_days": 1}),
            ("expiring_7d", "key.expiring", now + day, now + 7 * day, {"expires_in_days": 7}),
            ("expired", "key.expired", now - EXPIRED_LOOKBACK, now, {}),
        )
        for kind, event_type, low, high, extra in windows:
            last: tuple[datetime, int] | None = None
            while True:
                with self._database.write() as session:
                    query = select(ApiKey).where(
                        ApiKey.expires_at > low,
                        ApiKey.expires_at <= high,
                        ApiKey.revoked_at.is_(None),
                        ApiKey.enabled.is_(true()),
                        ApiKey.canary.is_(false()),
                        # A rolled key's end is the roll's grace period: expected, not news.
                        ~exists().where(_SUCCESSOR.rolled_from_id == ApiKey.id),
                    )
                    if last is not None:
                        query = query.where(_after(last))
                    rows = session.scalars(
                        query.order_by(ApiKey.expires_at, ApiKey.pk).limit(BATCH)
                    ).all()
                    if not rows:
                        break
                    last_row = rows[-1]
                    assert last_row.expires_at is not None
                    last = (last_row.expires_at, last_row.pk)
                    buckets = {row.id: _iso(row.expires_at) for row in rows if row.expires_at}
                    for row in _claim(session, rows, kind, buckets, now):
                        emit_key_event(
                            session,
                            row,
                            event_type,
                            at=now,
                            actor=POLICY_ACTOR.name,
                            details={**extra, "expires_at": row.expires_at},
                        )
                        report.add(kind, 1)
                if len(rows) < BATCH:
                    break

    # -- the stale-key policy ---------------------------------------------------------

    def _organizations_with_stale_policy(self) -> list[str]:
        with self._database.read() as session:
            return list(
                session.scalars(
                    select(Organization.id)
                    .where(Organization.stale_key_days.is_not(None))
                    .order_by(Organization.pk)
                ).all()
            )

    def _stale(self, report: ScanReport, organization_id: str, now: datetime) -> None:
        with self._database.read() as session:
            policy = policy_of(session, organization_id)
            dialect = session.get_bind().dialect.name
        # Revoke first (keys disabled M days ago), then disable, then warn: a key is
        # touched by one stage per scan, and a key already past N is disabled unwarned.
        for stage in (Stage.REVOKE, Stage.DISABLE, Stage.WARN):
            condition = stale_condition(stage, organization_id, policy, now, dialect)
            if condition is not None:
                self._stage(report, stage, condition, policy, now)

    def _stage(
        self,
        report: ScanReport,
        stage: Stage,
        condition: ColumnElement[bool],
        policy: KeyPolicy,
        now: datetime,
    ) -> None:
        # Two passes that the (organization_id, last_used_at) index serves: keys never
        # used (last_used_at IS NULL, in pk order), and keys last used before the
        # stage's cutoff (in last_used_at order); a walk of the whole organization in
        # pk order would visit every key at every scan.
        self._pass(report, stage, and_(condition, ApiKey.last_used_at.is_(None)), None, policy, now)
        cutoff = _used_before(stage, policy, now)
        used = and_(condition, ApiKey.last_used_at < cutoff)
        self._pass(report, stage, used, ApiKey.last_used_at, policy, now)

    def _pass(
        self,
        report: ScanReport,
        stage: Stage,
        condition: ColumnElement[bool],
        order: Any,
        policy: KeyPolicy,
        now: datetime,
    ) -> None:
        last: tuple[Any, int] | None = None
        while True:
            with self._database.write() as session:
                candidates = select(ApiKey.pk, ApiKey.id, ApiKey.last_used_at).where(condition)
                if last is not None:
                    candidates = candidates.where(_keyset(order, last))
                ordering = (ApiKey.pk,) if order is None else (order, ApiKey.pk)
                ids = session.execute(candidates.order_by(*ordering).limit(BATCH)).all()
                if not ids:
                    return
                last = (ids[-1][2], ids[-1][0])
                query = select(ApiKey).where(ApiKey.id.in_([row[1] for row in ids]), condition)
                if stage is Stage.WARN:
                    rows: Sequence[ApiKey] = session.scalars(query).all()
                else:  # the row stays as read until the change commits
                    rows = session.scalars(locked(query)).all()
                self._act(session, report, stage, rows, policy, now)
            if len(ids) < BATCH:
                return

    def _act(
        self,
        session: Session,
        report: ScanReport,
        stage: Stage,
        rows: Sequence[ApiKey],
        policy: KeyPolicy,
        now: datetime,
    ) -> None:
        if stage is Stage.REVOKE:
            buckets = {row.id: _iso(row.disabled_at) for row in rows if row.disabled_at}
            for row in _claim(session, rows, "auto_revoked", buckets, now):
                if self._keys.revoke_row(
                    session,
                    row,
                    POLICY_ACTOR,
                    now,
                    details={"reason": "stale", "disabled_at": buckets[row.id]},
                    action="key.auto_revoked",
                ):
                    report.add("auto_revoked", 1)
            return
        buckets = {row.id: _iso(last_activity(row)) for row in rows}
        if stage is Stage.DISABLE:
            for row in _claim(session, rows, "auto_disabled", buckets, now):
                details: dict[str, Any] = {
                    "reason": "stale",
                    "last_activity": buckets[row.id],
                    "stale_days": policy.stale_days,
                }
                if self._keys.disable_stale(session, row, POLICY_ACTOR, now, details=details):
                    report.add("auto_disabled", 1)
            return
        days = policy.stale_days or 0
        for row in _claim(session, rows, "unused", buckets, now):
            activity = last_activity(row)
            emit_key_event(
                session,
                row,
                "key.unused",
                at=now,
                actor=POLICY_ACTOR.name,
                details={
                    "unused_days": (now - activity).days,
                    "last_activity": activity,
                    "stale_days": days,
                    "acts_at": activity + timedelta(days=days),
                    "action": "disable" if policy.stale_disable else "report",
                    "warning_days": WARNING_DAYS,
                },
            )
            report.add("unused", 1)

    # -- the thread --------------------------------------------------------------------

    def _step(self, worker: str) -> bool:
        report = self.run_once()
        if report.counts:
            logger.info("scheduler: %s", _summary(report.counts))
        return False  # one scan a round

    def start(self) -> None:
        if self._interval > 0:
            self._loop.start()

    def stop(self) -> None:
        self._loop.stop()


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))


def _used_before(stage: Stage, policy: KeyPolicy, now: datetime) -> datetime:
    """A bound on ``last_used_at`` every key of ``stage`` meets (so the index can serve):
    a stale key was not used for N (or N-7) days; a key the policy disabled M days ago
    was not used since (a disabled key's use is refused, never recorded)."""
    days = policy.stale_days or 0
    if stage is Stage.REVOKE:
        return now - timedelta(days=policy.stale_revoke_days or 0)
    if stage is Stage.WARN:
        return now - timedelta(days=days - WARNING_DAYS)
    return now - timedelta(days=days)


def _keyset(order: Any, last: tuple[Any, int]) -> ColumnElement[bool]:
    value, pk = last
    if order is None:
        return ApiKey.pk > pk
    return or_(order > value, and_(order == value, ApiKey.pk > pk))


def _after(last: tuple[datetime, int]) -> ColumnElement[bool]:
    at, pk = last
    return or_(ApiKey.expires_at > at, and_(ApiKey.expires_at == at, ApiKey.pk > pk))


def _claim(
    session: Session, rows: Iterable[ApiKey], kind: str, buckets: dict[str, str], now: datetime
) -> list[ApiKey]:
    """The rows whose notice (``kind``, their bucket) this transaction inserted: the
    ones to raise the event for (``notices.claim_notices``, the once-only rule)."""
    wanted = [row for row in rows if row.id in buckets]
    inserted = claim_notices(session, kind, {row.id: buckets[row.id] for row in wanted}, now)
    return [row for row in wanted if row.id in inserted]


__all__ = ["ADVISORY_LOCK", "POLICY_ACTOR", "ScanReport", "Scheduler"]
