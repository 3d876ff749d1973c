"""Quota periods: which period a use falls in, and when that period ends. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

REFILLS: Final = ("day", "month")
#: The period of a quota that never refills.
FOREVER: Final = ""


def period_of(refill: str | None, now: datetime) -> str:
    """``2026-11-26`` (daily), ``2026-11`` (monthly) or ``""`` (never refills), in UTC."""
    if refill == "day":
        return now.astimezone(UTC).strftime("%Y-%m-%d")
    if refill == "month":
        return now.astimezone(UTC).strftime("%Y-%m")
    return FOREVER


def period_end(refill: str | None, now: datetime) -> datetime | None:
    """When the period holding ``now`` ends (the quota refills); None if it never does."""
    now = now.astimezone(UTC)
    if refill == "day":
        return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    if refill == "month":
        if now.month == 12:
            return datetime(now.year + 1, 1, 1, tzinfo=UTC)
        return datetime(now.year, now.month + 1, 1, tzinfo=UTC)
    return None


def used_in(period: str, stored_period: str, stored_used: int) -> int:
    """Uses counted in ``period``: the stored count if it is for that period, else none."""
    return stored_used if stored_period == period else 0
