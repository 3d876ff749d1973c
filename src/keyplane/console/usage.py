"""Where the key detail page gets its per-day usage: the key's aggregated counts.

The counts are the verifications of the key per UTC day, every outcome
included (a refused call is still a use of the key's value), as
:meth:`KeyService.usage` keeps them (written behind the request path by the
usage buffer, so the current day includes counts not yet flushed).
"""

from __future__ import annotations

from datetime import date, timedelta

from keyplane.service.records import Caller
from keyplane.service.services import Services


def daily_usage(
    services: Services, caller: Caller, key_id: str, *, days: int = 30
) -> list[tuple[date, int]] | None:
    """Verifications per UTC day over the last ``days`` days, oldest first; ``None`` if none.

    Another organization's key is a 404 here exactly as everywhere else
    (:meth:`KeyService.usage` looks the key up for the caller).
    """
    since = services.clock() - timedelta(days=days - 1)
    buckets = services.usage_history.buckets(caller, key_id, interval="day", since=since)
    points = [(bucket.start.date(), bucket.total) for bucket in buckets[-days:]]
    return points if any(count for _, count in points) else None
