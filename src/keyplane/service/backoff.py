"""Exponential backoff for work that is retried later (mail, webhook deliveries)."""

from __future__ import annotations

from datetime import timedelta


def backoff(failures: int, *, first: timedelta, cap: timedelta) -> timedelta:
    """The wait after the ``failures``-th failure in a row (1 waits ``first``, each
    next one twice as long, never more than ``cap``)."""
    if failures <= 1:
        return min(first, cap)
    # 2**n overflows timedelta long before any cap is reached: compare exponents first.
    if failures > 40:
        return cap
    wait: timedelta = first * 2 ** (failures - 1)
    return min(wait, cap)
