"""Last-used times, usage counters and quota uses through a write-behind buffer.

Verification only notes in memory: the latest use of each key, a count per
(key, hour, outcome), and the uses counted against each key's quota. A
background thread writes them all in one transaction at least once per
interval and once more at shutdown: one batched ``UPDATE`` for last-used
times, one upsert per (key, hour|day, outcome) adding to the stored counter
(no row per request), and one atomic ``quota_used = quota_used + n`` per key.
No request waits on a database write; a crash loses at most one interval.

Every process flushes its rows in one order (by key id, then counter), the
order in which a request that locks several keys locks them
(``service.keys.lifecycle.locked``): two flushes, or a flush and a leak report, wait for
each other instead of deadlocking on PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from keyplane.core.network import IPAddress
from keyplane.logs import Throttled
from keyplane.service.availability import cause_name
from keyplane.service.records import Usage
from keyplane.service.validation import clip_user_agent
from keyplane.storage.database import Database, WriteConflict
from keyplane.storage.errors import StorageUnavailable
from keyplane.storage.models import ApiKey, KeyUsage

logger = logging.getLogger("keyplane.usage")


_UPDATE_LAST_USED = (
    update(ApiKey)
    .where(ApiKey.id == bindparam("key_id"))
    .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < bindparam("at")))
    .values(
        last_used_at=bindparam("at"),
        last_used_ip=bindparam("ip"),
        last_used_user_agent=bindparam("user_agent"),
    )
)

_ADD_QUOTA_USES = (
    update(ApiKey)
    .where(ApiKey.id == bindparam("key_id"))
    # A late flush of an older period must not roll a newer period back.
    .where(ApiKey.quota_period <= bindparam("period"))
    .values(
        quota_used=case(
            (ApiKey.quota_period == bindparam("period"), ApiKey.quota_used + bindparam("n")),
            else_=bindparam("n"),
        ),
        quota_period=bindparam("period"),
    )
)

#: Hourly counters are kept this long (the usage API serves at most 60 days of hours);
#: daily counters are kept for good (one row per key, day and outcome).
HOURLY_RETENTION = timedelta(days=62)
PRUNE_EVERY = 3600.0

#: (key id, hour as seconds since the epoch // 3600, outcome)
CountKey = tuple[str, int, str]
UsageTuple = tuple[datetime, IPAddress | None, str | None]
#: (key id, client IP, user agent) of a use, counted between two flushes.
CallerKey = tuple[str, IPAddress | None, str | None]
#: A canary key's use: (key id, at, client IP, user agent).
CanaryUse = tuple[str, datetime, IPAddress | None, str | None]
#: Bounds on what one interval keeps in memory (the rest of a flood is not kept).
MAX_CALLERS_PER_FLUSH = 50_000
MAX_CANARY_USES_PER_FLUSH = 1_000


@dataclass(frozen=True, slots=True)
class Flushed:
    """What a flush wrote that the key-hygiene signals act on (``service/events/signals.py``)."""

    callers: dict[CallerKey, int]
    canary_uses: list[CanaryUse]
    #: key id -> refusals for its rate limit in this interval.
    rate_limited: dict[str, int]
    #: key id -> (quota period, uses stored) of the keys whose quota uses were written.
    quota: dict[str, tuple[str, int]]


class UsageBuffer:
    def __init__(self, database: Database, *, interval: float = 1.0) -> None:
        self._database = database
        self.interval = interval
        # key id -> (at, client IP, user agent): a tuple, not a Usage, because building
        # a frozen dataclass costs more than the rest of noting a use.
        self._pending: dict[str, UsageTuple] = {}
        self._in_flight: dict[str, UsageTuple] = {}
        self._counts: dict[CountKey, int] = {}
        self._counts_in_flight: dict[CountKey, int] = {}
        self._quota: dict[tuple[str, str], int] = {}
        self._quota_in_flight: dict[tuple[str, str], int] = {}
        #: Called after a flush with the stored (period, used) of the keys whose quota
        #: uses it wrote, so a process learns of the other processes' uses.
        self.on_quota_stored: Callable[[dict[str, tuple[str, int]]], None] | None = None
        #: Called after each flush with the callers, canary uses, rate-limit refusals
        #: and quota counts it saw (the key-hygiene signals: callers, events).
        self.after_flush: Callable[[Flushed], None] | None = None
        self._callers: dict[CallerKey, int] = {}
        self._canary_uses: list[CanaryUse] = []
        # Guards the swap of ``_pending`` only (held for nanoseconds, on the hot path);
        # ``_flush_lock`` serializes whole flushes, database write included.
        self._swap_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warnings = Throttled(logger)

    def record(self, key_id: str, usage: Usage) -> None:
        """Note a use; only the latest per key is kept until the next flush."""
        with self._swap_lock:
            self._pending[key_id] = (usage.at, usage.client_ip, usage.user_agent)

    def note(
        self,
        key_id: str,
        outcome: str,
        hour: int,
        at: datetime | None,
        client_ip: IPAddress | None = None,
        user_agent: str | None = None,
    ) -> None:
        """One verification: its outcome and, unless ``at`` is None, a use (last-used)."""
        slot = (key_id, hour, outcome)
        with self._swap_lock:
            if at is not None:
                self._pending[key_id] = (at, client_ip, user_agent)
                caller = (key_id, client_ip, user_agent)
                callers = self._callers
                seen = callers.get(caller)
                if seen is not None:
                    callers[caller] = seen + 1
                elif len(callers) < MAX_CALLERS_PER_FLUSH:
                    callers[caller] = 1
            self._counts[slot] = self._counts.get(slot, 0) + 1

    def note_canary(
        self,
        key_id: str,
        at: datetime,
        client_ip: IPAddress | None,
        user_agent: str | None,
    ) -> None:
        """A canary key was presented: raised as ``key.canary_used`` after the next flush."""
        with self._swap_lock:
            if len(self._canary_uses) < MAX_CANARY_USES_PER_FLUSH:
                self._canary_uses.append((key_id, at, client_ip, user_agent))

    def use_quota(self, key_id: str, period: str) -> None:
        """Count one use against ``key_id``'s quota in ``period``."""
        slot = (key_id, period)
        with self._swap_lock:
            self._quota[slot] = self._quota.get(slot, 0) + 1

    def pending(self, key_id: str) -> Usage | None:
        """A use noted but not yet written, so reads can show it at once."""
        noted = self._pending.get(key_id) or self._in_flight.get(key_id)
        return Usage(*noted) if noted is not None else None

    def pending_counts(self, key_id: str) -> dict[tuple[datetime, str], int]:
        """Counts of ``key_id`` not yet written, by (hour start, outcome)."""
        with self._swap_lock:
            slots = [*self._counts.items(), *self._counts_in_flight.items()]
        counts: dict[tuple[datetime, str], int] = {}
        for (slot_key, hour, outcome), count in slots:
            if slot_key == key_id:
                at = datetime.fromtimestamp(hour * 3600, UTC)
                counts[(at, outcome)] = counts.get((at, outcome), 0) + count
        return counts

    def pending_quota(self, key_id: str, period: str) -> int:
        """Quota uses of ``key_id`` in ``period`` not yet written."""
        slot = (key_id, period)
        return self._quota.get(slot, 0) + self._quota_in_flight.get(slot, 0)

    def flush(self) -> int:
        """Write every pending use and count; return how many keys' last use was updated."""
        with self._flush_lock:
            with self._swap_lock:
                pending, self._pending = self._pending, {}
                counts, self._counts = self._counts, {}
                quota, self._quota = self._quota, {}
                callers, self._callers = self._callers, {}
                canary_uses, self._canary_uses = self._canary_uses, []
            if canary_uses or callers:  # they need no write of their own first
                self._signal(callers, canary_uses, {}, {})
            if not pending and not counts and not quota:
                return 0
            self._in_flight = pending
            self._counts_in_flight = counts
            self._quota_in_flight = quota
            stored: dict[str, tuple[str, int]] = {}
            try:
                with self._database.write() as session:
                    connection = session.connection()
                    if pending:
                        connection.execute(_UPDATE_LAST_USED, _rows(pending))
                    if counts:
                        connection.execute(self._upsert_counts(), _count_rows(counts))
                    if quota:
                        connection.execute(
                            _ADD_QUOTA_USES,
                            [
                                {"key_id": key_id, "period": period, "n": n}
                                for (key_id, period), n in sorted(quota.items())
                            ],
                        )
                        ids = sorted({key_id for key_id, _ in quota})
                        for key_id, period, used in connection.execute(
                            select(ApiKey.id, ApiKey.quota_period, ApiKey.quota_used).where(
                                ApiKey.id.in_(ids)
                            )
                        ):
                            stored[key_id] = (period, used)
            except (SQLAlchemyError, StorageUnavailable, WriteConflict) as error:
                # Keep everything for the next try (a newer last use wins over an older one).
                with self._swap_lock:
                    for key_id, usage in pending.items():
                        self._pending.setdefault(key_id, usage)
                    for slot, count in counts.items():
                        self._counts[slot] = self._counts.get(slot, 0) + count
                    for quota_slot, n in quota.items():
                        self._quota[quota_slot] = self._quota.get(quota_slot, 0) + n
                self._warnings.warning(
                    "flush",
                    "could not write last-used times and usage counts (%s); will retry",
                    cause_name(error),
                )
                return 0
            finally:
                self._in_flight = {}
                self._counts_in_flight = {}
                self._quota_in_flight = {}
            self._warnings.recovered("flush", "last-used times and usage counts are written again")
            if stored and self.on_quota_stored is not None:
                self.on_quota_stored(stored)
            self._signal({}, [], counts, stored)
            return len(pending)

    def _signal(
        self,
        callers: dict[CallerKey, int],
        canary_uses: list[CanaryUse],
        counts: dict[CountKey, int],
        quota: dict[str, tuple[str, int]],
    ) -> None:
        """Hand what this flush saw to :attr:`after_flush` (its failures are its own)."""
        if self.after_flush is None:
            return
        rate_limited: dict[str, int] = {}
        for (key_id, _hour, outcome), count in counts.items():
            if outcome == "RATE_LIMITED":
                rate_limited[key_id] = rate_limited.get(key_id, 0) + count
        if not (callers or canary_uses or rate_limited or quota):
            return
        try:
            self.after_flush(Flushed(callers, canary_uses, rate_limited, quota))
        except Exception as error:  # the flusher must outlive any one bad signal
            # A canary's alarm must not be lost to an outage: keep it for the next flush
            # (callers and the other signals are statistics, and are dropped).
            with self._swap_lock:
                room = MAX_CANARY_USES_PER_FLUSH - len(self._canary_uses)
                self._canary_uses[:0] = canary_uses[: max(room, 0)]
            self._warnings.warning(
                "signals",
                "could not record callers and key events after a usage flush (%s); "
                "canary uses are kept for the next one",
                cause_name(error),
            )

    def _upsert_counts(self) -> Any:
        dialect: Any = sqlite if self._database.is_sqlite else postgresql
        statement = dialect.insert(KeyUsage).values(
            key_id=bindparam("key_id"),
            interval=bindparam("interval"),
            bucket=bindparam("bucket"),
            outcome=bindparam("outcome"),
            count=bindparam("count"),
        )
        return statement.on_conflict_do_update(
            index_elements=[KeyUsage.key_id, KeyUsage.interval, KeyUsage.bucket, KeyUsage.outcome],
            set_={"count": KeyUsage.count + statement.excluded["count"]},
        )

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="keyplane-usage-flusher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher and write what is still pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        last_prune = 0.0
        while not self._stop.wait(self.interval):
            try:
                self.flush()
                if time.monotonic() - last_prune >= PRUNE_EVERY:
                    last_prune = time.monotonic()
                    self.prune(datetime.now(UTC))
            except Exception:  # the flusher must outlive any one bad flush
                logger.exception("last-used flush failed")

    def prune(self, now: datetime) -> int:
        """Drop hourly counters older than :data:`HOURLY_RETENTION` (daily ones stay)."""
        try:
            with self._database.write() as session:
                result = session.execute(
                    delete(KeyUsage).where(
                        KeyUsage.interval == "hour", KeyUsage.bucket < now - HOURLY_RETENTION
                    )
                )
        except (SQLAlchemyError, StorageUnavailable) as error:
            self._warnings.warning("prune", "could not prune hourly usage (%s)", cause_name(error))
            return 0
        return int(getattr(result, "rowcount", 0) or 0)


def _rows(pending: dict[str, UsageTuple]) -> list[dict[str, object]]:
    return [
        {
            "key_id": key_id,
            "at": at,
            "ip": str(client_ip) if client_ip is not None else None,
            "user_agent": clip_user_agent(user_agent),
        }
        for key_id, (at, client_ip, user_agent) in sorted(pending.items())
    ]


def _count_rows(counts: dict[CountKey, int]) -> list[dict[str, object]]:
    """One row per (key, hour, outcome) and one per (key, day, outcome), in lock order."""
    totals: dict[tuple[str, str, datetime, str], int] = {}
    for (key_id, hour, outcome), count in counts.items():
        hour_slot = (key_id, "hour", datetime.fromtimestamp(hour * 3600, UTC), outcome)
        day_slot = (key_id, "day", datetime.fromtimestamp(hour // 24 * 86_400, UTC), outcome)
        totals[hour_slot] = totals.get(hour_slot, 0) + count
        totals[day_slot] = totals.get(day_slot, 0) + count
    # One lock order for every flush: by key, then the counter's unique columns.
    return [
        {"key_id": key_id, "interval": interval, "bucket": bucket, "outcome": outcome, "count": n}
        for (key_id, interval, bucket, outcome), n in sorted(totals.items())
    ]
