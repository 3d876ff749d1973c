"""Durations written the way people write them: ``30d``, ``24h``, ``1h30m``, ``90s``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from keyplane.core.errors import InvalidInput

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE: Final = re.compile(r"(?:[0-9]{1,9}[smhdw])+")
_PART_RE: Final = re.compile(r"([0-9]{1,9})([smhdw])")
MAX_DURATION: Final = timedelta(days=365 * 100)


def parse_duration(text: str) -> timedelta:
    """Parse ``text`` into a timedelta; raise :class:`InvalidInput` if it is not a duration."""
    compact = text.strip().lower().replace(" ", "") if isinstance(text, str) else ""
    if not _DURATION_RE.fullmatch(compact):
        raise InvalidInput(
            f"{text!r} is not a duration: use a number and a unit, e.g. 90s, 15m, 24h, 30d, 2w",
            field="duration",
        )
    seconds = sum(int(amount) * _UNITS[unit] for amount, unit in _PART_RE.findall(compact))
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidInput("a duration is at most 100 years", field="duration")
    return timedelta(seconds=seconds)
