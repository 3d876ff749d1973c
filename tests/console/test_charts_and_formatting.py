"""Pure parts of the console: the SVG chart, time formatting, form parsing."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import UTC, date, datetime, timedelta

import pytest

from keyplane.console.charts import HEIGHT, usage_chart_svg
from keyplane.console.formatting import day, duration, exact, relative
from keyplane.console.keys import parse_expiry, parse_scopes
from keyplane.core.errors import InvalidInput

SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # noqa: S314 - our own output, not untrusted input


def thirty_days(counts: list[int]) -> list[tuple[date, int]]:
    start = date(2026, 10, 28)
    return [(start + timedelta(days=index), count) for index, count in enumerate(counts)]


def test_chart_has_one_bar_per_day_with_its_count_as_title() -> None:
    counts = [index % 7 * 3 for index in range(30)]
    svg = parse(usage_chart_svg(thirty_days(counts)))
    bars = svg.findall(f"{SVG}rect")
    assert len(bars) == 30
    titles = [bar.find(f"{SVG}title").text for bar in bars]  # type: ignore[union-attr]
    assert titles[0] == "2026-10-28: 0 requests"
    assert titles[1] == "2026-10-29: 3 requests"
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}desc").text.startswith(f"{sum(counts)} requests over 30 days")  # type: ignore[union-attr]


def test_chart_bar_heights_are_proportional_and_fit() -> None:
    svg = parse(usage_chart_svg(thirty_days([10] * 15 + [5] * 15)))
    heights = [float(bar.get("height", "0")) for bar in svg.findall(f"{SVG}rect")]
    assert heights[0] == pytest.approx(2 * heights[-1])
    assert max(heights) <= HEIGHT
    for bar in svg.findall(f"{SVG}rect"):
        assert float(bar.get("y", "0")) >= 0


def test_chart_of_zero_usage_draws_flat_bars() -> None:
    svg = parse(usage_chart_svg(thirty_days([0] * 30)))
    assert {bar.get("height") for bar in svg.findall(f"{SVG}rect")} == {"0.0"}


def test_chart_axis_uses_a_round_maximum() -> None:
    text = usage_chart_svg(thirty_days([0] * 29 + [37]))
    assert ">50</text>" in text
    assert ">25</text>" in text


def test_chart_escapes_its_title_and_has_no_inline_style() -> None:
    text = usage_chart_svg(thirty_days([1] * 30), title="<script>")
    assert "<script>" not in text
    assert "style=" not in text
    assert "1 request<" in text


def test_chart_of_no_points_is_still_valid_svg() -> None:
    svg = parse(usage_chart_svg([]))
    assert svg.findall(f"{SVG}rect") == []


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(None, "Never", id="never"),
        pytest.param(NOW - timedelta(seconds=2), "just now", id="just-now"),
        pytest.param(NOW - timedelta(seconds=42), "42 seconds ago", id="seconds"),
        pytest.param(NOW - timedelta(minutes=1, seconds=5), "1 minute ago", id="one-minute"),
        pytest.param(NOW - timedelta(hours=5), "5 hours ago", id="hours"),
        pytest.param(NOW - timedelta(days=3), "3 days ago", id="days"),
        pytest.param(NOW - timedelta(days=400), "1 year ago", id="year"),
        pytest.param(NOW + timedelta(days=30), "in 1 month", id="future"),
    ],
)
def test_relative_times(moment: datetime | None, expected: str) -> None:
    assert relative(moment, NOW) == expected


def test_exact_and_day() -> None:
    assert exact(NOW) == "2026-11-26 18:00:00 UTC"
    assert day(NOW) == "Nov 26, 2026"
    assert exact(None) == day(None) == ""


@pytest.mark.parametrize(
    ("milliseconds", "expected"),
    [
        pytest.param(None, "", id="none"),
        pytest.param(1, "1 ms", id="one-ms"),
        pytest.param(999, "999 ms", id="under-a-second"),
        pytest.param(2_449, "2.4 s", id="seconds"),
        pytest.param(185_000, "3 min 5 s", id="minutes"),
        pytest.param(3_720_000, "1 h 2 min", id="hours"),
    ],
)
def test_job_durations(milliseconds: int | None, expected: str) -> None:
    assert duration(milliseconds) == expected


def test_parse_expiry() -> None:
    assert parse_expiry("never", "", NOW) is None
    assert parse_expiry("30", "", NOW) == NOW + timedelta(days=30)
    assert parse_expiry("custom", "2030-01-02", NOW) == datetime(2030, 1, 2, tzinfo=UTC)
    for choice, custom in (("custom", ""), ("custom", "02/01/2030"), ("7", ""), ("", "")):
        with pytest.raises(InvalidInput):
            parse_expiry(choice, custom, NOW)


def test_parse_scopes() -> None:
    assert parse_scopes(["keys:read"], " jobs:read,jobs:run  ") == [
        "keys:read",
        "jobs:read",
        "jobs:run",
    ]
