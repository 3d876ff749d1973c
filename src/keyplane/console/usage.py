"""Where the key detail page gets its per-day usage.

This is the one seam between the console and usage counting. Keyplane keeps
only each key's *last* use today (``last_used_at``), which says nothing about
how many calls a day saw, so :func:`daily_usage` answers ``None`` and the page
says "No usage recorded yet" rather than draw a made-up chart. When a service
method for aggregated per-key daily counts exists, this function calls it and
returns ``(day, count)`` for each of the last ``days`` days, oldest first.
"""

from __future__ import annotations

from datetime import date

from keyplane.service.records import Caller
from keyplane.service.services import Services


def daily_usage(
    services: Services, caller: Caller, key_id: str, *, days: int = 30
) -> list[tuple[date, int]] | None:
    """Requests per UTC day for the key over the last ``days`` days, or ``None`` if unknown.

    The key is looked up first so that a key of another organization is a 404
    here exactly as everywhere else.
    """
    services.keys.get(caller, key_id)
    return None
