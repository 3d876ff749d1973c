"""Jinja filters: times as people read them."""

from __future__ import annotations

from datetime import datetime


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
