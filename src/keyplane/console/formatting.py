"""Jinja filters: times as people read them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final


def relative(moment: datetime | None, now: datetime) -> str:
    """``"12 seconds ago"``, ``"in 30 days"``, ``"just now"``; ``"Never"`` for no time."""
    if moment is None:
        return "Never"
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for size, unit in (
        (86400 * 365, "year"),
        (86400 * 30, "month"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ):
        if seconds >= size:
            count = int(seconds // size)
            text = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"  # pragma: no cover - the loop ends at one second


def exact(moment: datetime | None) -> str:
    """``"2026-11-26 18:30:01 UTC"``."""
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def day(moment: datetime | None) -> str:
    """``"Nov 26, 2026"``."""
    if moment is None:
        return ""
    return f"{moment.strftime('%b')} {moment.day}, {moment.year}"


def actor_label(actor: str, names: dict[str, str]) -> str:
    """``user:usr_...`` as the person's e-mail when known; keys and the operator as they are."""
    return names.get(actor, actor)


def duration(milliseconds: int | None) -> str:
    """``"850 ms"``, ``"2.4 s"``, ``"3 min 5 s"``, ``"1 h 2 min"``; ``""`` for none."""
    if milliseconds is None:
        return ""
    if milliseconds < 1000:
        return f"{milliseconds} ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f} s"
    seconds = milliseconds // 1000
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def span(delta: timedelta) -> str:
    """``"30 minutes"``, ``"12 hours"``, ``"7 days"``: a setting's length in words."""
    seconds = int(delta.total_seconds())
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


#: (what the User-Agent contains, what a person calls it), first match wins.
_BROWSERS: Final = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-httpx", "Python (httpx)"),
    ("python-requests", "Python (requests)"),
)
_SYSTEMS: Final = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device(user_agent: str | None) -> str:
    """``"Chrome on macOS"`` from a User-Agent header; ``"Unknown device"`` without one."""
    if not user_agent:
        return "Unknown device"
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or user_agent[:40]


def callers_phrase(count: int | None, days: int = 7) -> str:
    """What a revocation would break, for the revoke dialogs: callers seen lately."""
    if not count:
        return f"No program used it in the last {days} days."
    callers = "1 caller" if count == 1 else f"{count} callers"
    return f"{callers} (client addresses) used it in the last {days} days; they will stop working."
