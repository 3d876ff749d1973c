"""What verification saw, turned into records and events after each usage flush.

Verification never writes (``service/limits/usage.py``): it notes each use in
memory, and the flusher hands this module what one interval saw
(:class:`~keyplane.service.limits.usage.Flushed`):

- **callers**: the distinct client IPs and user agents of each key, with a count
  and when last seen, in ``key_callers``; at most :data:`MAX_CALLERS_PER_KEY` of
  each kind per key (the least recently seen go first), none older than
  :data:`CALLER_RETENTION`. "Who still uses this key" reads them (:func:`callers_of`).
- **canary uses**: ``key.canary_used`` (audited, with the caller's IP and user
  agent), at most once per key, caller and minute, and at most
  :data:`CANARY_EVENTS_PER_MINUTE` per key and minute;
- **rate-limit refusals**: ``key.rate_limited``, at most once per key and quarter hour;
- **quota counts**: ``key.quota_warning`` at 80 % and ``key.quota_exhausted`` at
  100 %, once per key and quota period.

"Once" is a row of ``key_notices`` (``notices.py``), so it holds across instances.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from keyplane.core.errors import InvalidInput
from keyplane.core.ids import is_id
from keyplane.core.network import IPAddress
from keyplane.logs import Throttled
from keyplane.service.audit import record_key_event
from keyplane.service.events.emit import emit_key_event
from keyplane.service.events.notices import claim_notice
from keyplane.service.keys.queries import KeyQueries
from keyplane.service.limits.usage import Flushed
from keyplane.service.records import Actor, Caller
from keyplane.service.validation import clip_user_agent
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey, KeyCaller

logger = logging.getLogger("keyplane.events")

MAX_CALLERS_PER_KEY: Final = 100
CALLER_RETENTION: Final = timedelta(days=30)
RATE_LIMITED_DEBOUNCE: Final = timedelta(minutes=15)
QUOTA_WARNING_SHARE: Final = 0.8
#: ``key.canary_used`` events per canary key and minute, at most (one per caller).
CANARY_EVENTS_PER_MINUTE: Final = 5
#: ``key_callers.kind`` values.
IP, USER_AGENT = "ip", "user_agent"
#: The value stored for a use that came without a user agent.
NO_USER_AGENT: Final = ""
PRUNE_EVERY: Final = 3600.0
SYSTEM: Final = Actor("system")


@dataclass(frozen=True, slots=True)
class CallerRecord:
    value: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True, slots=True)
class KeyCallers:
    """Who used a key in the last ``days`` days, most recent first."""

    key_id: str
    days: int
    ips: tuple[CallerRecord, ...]
    user_agents: tuple[CallerRecord, ...]

    def ips_since(self, since: datetime) -> int:
        """How many distinct client IPs used the key since ``since``."""
        return sum(1 for caller in self.ips if caller.last_seen_at >= since)


class KeySignals:
    """The after-flush step of the usage buffer (``UsageBuffer.after_flush``)."""

    def __init__(
        self, database: Database, keys: KeyQueries, *, clock: Callable[[], datetime]
    ) -> None:
        self._database = database
        self._keys = keys
        self._clock = clock
        self._last_prune = 0.0
        self._warnings = Throttled(logger)

    def __call__(self, flushed: Flushed) -> None:
        now = self._clock()
        with self._database.write() as session:
            if flushed.callers:
                self._store_callers(session, flushed.callers, now)
            if flushed.canary_uses:
                self._canary_used(session, flushed.canary_uses)
            if flushed.rate_limited:
                self._rate_limited(session, flushed.rate_limited, now)
            if flushed.quota:
                self._quota(session, flushed.quota, now)
        if time.monotonic() - self._last_prune >= PRUNE_EVERY:
            self._last_prune = time.monotonic()
            self.prune(now)

    # -- callers -------------------------------------------------------------

    def _store_callers(
        self,
        session: Session,
        callers: dict[tuple[str, IPAddress | None, str | None], int],
        now: datetime,
    ) -> None:
        totals: dict[tuple[str, str, str], int] = {}
        for (key_id, client_ip, user_agent), count in callers.items():
            if client_ip is not None:
                slot = (key_id, IP, str(client_ip))
                totals[slot] = totals.get(slot, 0) + count
            agent = clip_user_agent(user_agent) or NO_USER_AGENT
            slot = (key_id, USER_AGENT, agent)
            totals[slot] = totals.get(slot, 0) + count
        dialect: Any = sqlite if self._database.is_sqlite else postgresql
        statement = dialect.insert(KeyCaller)
        statement = statement.on_conflict_do_update(
            index_elements=[KeyCaller.key_id, KeyCaller.kind, KeyCaller.value],
            set_={
                "count": KeyCaller.count + statement.excluded["count"],
                "last_seen_at": statement.excluded["last_seen_at"],
            },
        )
        rows = [
            {
                "key_id": key_id,
                "kind": kind,
                "value": value,
                "count": count,
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for (key_id, kind, value), count in sorted(totals.items())
        ]
        session.execute(statement, rows)
        self._bound(session, sorted({key_id for key_id, _, _ in totals}))

    @staticmethod
    def _bound(session: Session, key_ids: list[str]) -> None:
        """Keep at most :data:`MAX_CALLERS_PER_KEY` of each kind per key."""
        for start in range(0, len(key_ids), 500):
            over = session.execute(
                select(KeyCaller.key_id, KeyCaller.kind, func.count())
                .where(KeyCaller.key_id.in_(key_ids[start : start + 500]))
                .group_by(KeyCaller.key_id, KeyCaller.kind)
                .having(func.count() > MAX_CALLERS_PER_KEY)
            ).all()
            for key_id, kind, count in over:
                oldest = (
                    select(KeyCaller.value)
                    .where(KeyCaller.key_id == key_id, KeyCaller.kind == kind)
                    .order_by(KeyCaller.last_seen_at, KeyCaller.value)
                    .limit(count - MAX_CALLERS_PER_KEY)
                    .scalar_subquery()
                )
                session.execute(
                    delete(KeyCaller).where(
                        KeyCaller.key_id == key_id,
                        KeyCaller.kind == kind,
                        KeyCaller.value.in_(oldest),
                    )
                )

    def prune(self, now: datetime) -> int:
        """Drop callers not seen for :data:`CALLER_RETENTION`."""
        try:
            with self._database.write() as session:
                result: Any = session.execute(
                    delete(KeyCaller).where(KeyCaller.last_seen_at < now - CALLER_RETENTION)
                )
        except Exception as error:  # pruning is housekeeping: try again later
            self._warnings.warning(
                "prune", "could not prune key callers (%s)", type(error).__name__
            )
            return 0
        return int(result.rowcount or 0)

    # -- events --------------------------------------------------------------

    def _canary_used(
        self,
        session: Session,
        uses: list[tuple[str, datetime, IPAddress | None, str | None]],
    ) -> None:
        grouped: dict[tuple[str, str, str], tuple[datetime, int]] = {}
        for key_id, at, address, agent in uses:
            slot = (key_id, str(address) if address else "", clip_user_agent(agent) or "")
            first, count = grouped.get(slot, (at, 0))
            grouped[slot] = (min(first, at), count + 1)
        rows = _rows(session, {key_id for key_id, _, _ in grouped})
        for (key_id, client_ip, user_agent), (at, count) in sorted(grouped.items()):
            row = rows.get(key_id)
            if row is None:
                continue
            caller = hashlib.sha256(f"{client_ip}\n{user_agent}".encode()).hexdigest()[:16]
            minute = int(at.timestamp()) // 60
            if not claim_notice(session, key_id, "canary_used", f"{minute}:{caller}", at):
                continue
            # At most a few alarms per key and minute: a flood from many addresses must
            # not become a flood of mail (the audit event is the alarm's only copy).
            if not any(
                claim_notice(session, key_id, "canary_minute", f"{minute}:{slot}", at)
                for slot in range(CANARY_EVENTS_PER_MINUTE)
            ):
                continue
            record_key_event(
                session,
                row,
                Actor("unknown", client_ip or None, user_agent or None),
                "key.canary_used",
                at=at,
                details={
                    "client_ip": client_ip or None,
                    "user_agent": user_agent or None,
                    "uses": count,
                },
            )

    def _rate_limited(self, session: Session, refused: dict[str, int], now: datetime) -> None:
        window = int(RATE_LIMITED_DEBOUNCE.total_seconds())
        bucket = str(int(now.timestamp()) // window * window)
        rows = _rows(session, refused)
        for key_id, count in sorted(refused.items()):
            row = rows.get(key_id)
            if row is None or not claim_notice(session, key_id, "rate_limited", bucket, now):
                continue
            self._emit(
                session,
                row,
                "key.rate_limited",
                now,
                {"refusals": count, "rate_limit": row.rate_limit, "window": row.rate_limit_window},
            )

    def _quota(self, session: Session, stored: dict[str, tuple[str, int]], now: datetime) -> None:
        rows = _rows(session, stored)
        for key_id, (period, used) in sorted(stored.items()):
            row = rows.get(key_id)
            if row is None or row.quota_limit is None:
                continue
            limit = row.quota_limit
            details = {"used": used, "limit": limit, "period": period or None}
            if used >= limit * QUOTA_WARNING_SHARE and claim_notice(
                session, key_id, "quota_80", period or "all", now
            ):
                self._emit(session, row, "key.quota_warning", now, details)
            if used >= limit and claim_notice(session, key_id, "quota_100", period or "all", now):
                self._emit(session, row, "key.quota_exhausted", now, details)

    @staticmethod
    def _emit(
        session: Session, row: ApiKey, event_type: str, now: datetime, details: dict[str, Any]
    ) -> None:
        emit_key_event(session, row, event_type, at=now, actor=SYSTEM.name, details=details)

    # -- reading -------------------------------------------------------------

    def callers(self, caller: Caller, key_id: str, days: int = 30) -> KeyCallers:
        """Who used ``key_id`` in the last ``days`` days (1 to 30); a key of another
        organization is not found, as everywhere."""
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 30:
            raise InvalidInput("days is a whole number from 1 to 30", field="days")
        self._keys.get(caller, key_id)
        return self.callers_of(key_id, self._clock(), days)

    def recent_callers(self, key_ids: Iterable[str], days: int = 7) -> dict[str, int]:
        """Distinct client IPs per key in the last ``days`` days (keys already shown to
        the caller: the console's list and revoke dialogs)."""
        ids = sorted(set(key_ids))
        since = self._clock() - timedelta(days=days)
        counts: dict[str, int] = {}
        with self._database.read() as session:
            for start in range(0, len(ids), 500):
                for key_id, count in session.execute(
                    select(KeyCaller.key_id, func.count())
                    .where(
                        KeyCaller.key_id.in_(ids[start : start + 500]),
                        KeyCaller.kind == IP,
                        KeyCaller.last_seen_at >= since,
                    )
                    .group_by(KeyCaller.key_id)
                ):
                    counts[key_id] = int(count)
        return counts

    def callers_of(self, key_id: str, now: datetime, days: int = 30) -> KeyCallers:
        """The callers of ``key_id`` (whose access the caller checked) seen in ``days`` days."""
        since = now - timedelta(days=days)
        with self._database.read() as session:
            found = session.scalars(
                select(KeyCaller)
                .where(KeyCaller.key_id == key_id, KeyCaller.last_seen_at >= since)
                .order_by(KeyCaller.last_seen_at.desc(), KeyCaller.value)
            ).all()
        by_kind: dict[str, list[CallerRecord]] = {IP: [], USER_AGENT: []}
        for row in found:
            by_kind.setdefault(row.kind, []).append(
                CallerRecord(row.value, row.count, row.first_seen_at, row.last_seen_at)
            )
        return KeyCallers(key_id, days, tuple(by_kind[IP]), tuple(by_kind[USER_AGENT]))


def _rows(session: Session, key_ids: Iterable[str]) -> dict[str, ApiKey]:
    ids = sorted(key_id for key_id in key_ids if is_id(key_id, "key"))
    found: dict[str, ApiKey] = {}
    for start in range(0, len(ids), 500):
        for row in session.scalars(select(ApiKey).where(ApiKey.id.in_(ids[start : start + 500]))):
            found[row.id] = row
    return found
