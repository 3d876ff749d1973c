"""A small bar chart of daily usage, drawn on the server as SVG (no script, no library)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape
from typing import Final

WIDTH: Final = 600
HEIGHT: Final = 160
_LEFT: Final = 36
_BOTTOM: Final = 22
_TOP: Final = 10


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above ``value``."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def usage_chart_svg(points: Sequence[tuple[date, int]], *, title: str = "Requests per day") -> str:
    """An accessible SVG bar chart of ``(day, count)`` points, oldest first.

    Every bar carries a ``<title>`` (the day and its count) for hover and
    screen readers; the whole chart has a role, a title and a summary.
    Colours come from CSS classes, so the console's stylesheet themes it and
    the Content-Security-Policy needs no inline styles.
    """
    counts = [max(0, int(count)) for _, count in points]
    total = sum(counts)
    top = _nice_ceiling(max(counts, default=0) or 1)
    plot_width = WIDTH - _LEFT - 4
    plot_height = HEIGHT - _BOTTOM - _TOP
    slot = plot_width / max(len(points), 1)
    bar_width = max(1.0, slot * 0.7)
    summary = f"{total} requests over {len(points)} days"
    if points:
        summary += f", {points[0][0].isoformat()} to {points[-1][0].isoformat()}"
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-title chart-desc" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(summary)}</desc>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = _TOP + plot_height * (1 - fraction)
        label = top * fraction
        text = f"{label:g}"
        parts.append(
            f'<line class="chart-grid" x1="{_LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="chart-axis" x="{_LEFT - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(text)}</text>'
        )
    for index, ((day, _), count) in enumerate(zip(points, counts, strict=True)):
        height = plot_height * count / top
        x = _LEFT + index * slot + (slot - bar_width) / 2
        y = _TOP + plot_height - height
        noun = "request" if count == 1 else "requests"
        parts.append(
            f'<rect class="chart-bar" x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" '
            f'height="{height:.1f}" rx="1.5">'
            f"<title>{day.isoformat()}: {count} {noun}</title></rect>"
        )
    for index in (0, len(points) - 1) if points else ():
        day = points[index][0]
        x = _LEFT + index * slot + slot / 2
        anchor = "start" if index == 0 else "end"
        parts.append(
            f'<text class="chart-axis" x="{x:.1f}" y="{HEIGHT - 6}" '
            f'text-anchor="{anchor}">{day.strftime("%b %d")}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
