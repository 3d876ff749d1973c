"""A key's usage over time: verifications per hour or day, by outcome.

Counts come from the ``key_usage`` table and, for what this process has not
written yet, from the usage buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import select

from keyplane.core.errors import InvalidInput
from keyplane.service.keys.queries import KeyQueries
from keyplane.service.limits.usage import UsageBuffer
from keyplane.service.records import Caller, UsageBucket
from keyplane.storage.database import Database
from keyplane.storage.models import KeyUsage

USAGE_INTERVALS: Final = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
#: The most buckets one usage query returns (a year of days, or 60 days of hours).
MAX_USAGE_BUCKETS: Final = 1_440


class UsageHistory:
    def __init__(
        self,
        database: Database,
        keys: KeyQueries,
        usage: UsageBuffer,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._database = database
        self._keys = keys
        self._usage = usage
        self._clock = clock

    def buckets(
        self,
        caller: Caller,
        key_id: str,
        *,
        interval: str = "day",
        since: datetime | None = None,
        until: datetime | None = None,
        zero_fill: bool = True,
    ) -> list[UsageBucket]:
        """Verifications of a key per hour or day, by outcome, oldest bucket first.

        ``since`` defaults to 30 days (``day``) or 48 hours (``hour``) before
        ``until`` (default now); both are rounded down to a bucket start. With
        ``zero_fill`` every bucket in the range is present, empty ones included.
        Counts not yet written by this process's usage buffer are included.
        """
        step = USAGE_INTERVALS.get(interval)
        if step is None:
            raise InvalidInput("interval is hour or day", field="interval")
        now = self._clock()
        end = bucket_start(interval, until or now)
        # The last bucket must be followed by another that a datetime can hold, and
        # the default range must fit before the first: else the arithmetic overflows.
        if end > datetime.max.replace(tzinfo=end.tzinfo) - step:
            raise InvalidInput("until is too far in the future", field="until")
        default_span = step * (30 if interval == "day" else 47)
        if since is None and end < datetime.min.replace(tzinfo=end.tzinfo) + default_span:
            raise InvalidInput("until is too far in the past", field="until")
        start = bucket_start(interval, since or end - default_span)
        if start > end:
            raise InvalidInput("since must be before until", field="since")
        if (end - start) // step >= MAX_USAGE_BUCKETS:
            raise InvalidInput(
                f"at most {MAX_USAGE_BUCKETS} {interval}s per query; narrow since", field="since"
            )
        counts: dict[datetime, dict[str, int]] = {}
        with self._database.read() as session:
            self._keys.find_row(session, caller, key_id)
            rows = session.execute(
                select(KeyUsage.bucket, KeyUsage.outcome, KeyUsage.count).where(
                    KeyUsage.key_id == key_id,
                    KeyUsage.interval == interval,
                    KeyUsage.bucket >= start,
                    KeyUsage.bucket <= end,
                )
            ).all()
        for bucket, outcome, count in rows:
            outcomes = counts.setdefault(bucket, {})
            outcomes[outcome] = outcomes.get(outcome, 0) + count
        for (hour, outcome), count in self._usage.pending_counts(key_id).items():
            bucket = bucket_start(interval, hour)
            if start <= bucket <= end:
                outcomes = counts.setdefault(bucket, {})
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        if not zero_fill:
            return [UsageBucket(at, counts[at]) for at in sorted(counts)]
        buckets = (start + step * index for index in range((end - start) // step + 1))
        return [UsageBucket(at, counts.get(at, {})) for at in buckets]


def bucket_start(interval: str, at: datetime) -> datetime:
    """The start of the hour or (UTC) day holding ``at``."""
    try:
        at = at.astimezone(UTC)
    except OverflowError:  # 0001-01-01 with a positive offset, 9999-12-31 with a negative one
        raise InvalidInput("that date is out of range") from None
    if interval == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)
