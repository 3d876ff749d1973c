"""Durations: 30d, 24h, 1h30m, 90s, 2w."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.core.durations import MAX_DURATION, parse_duration
from keyplane.core.errors import InvalidInput

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("30m1h", timedelta(hours=1, minutes=30)),
        ("1h1h", timedelta(hours=2)),
        ("0s", timedelta(0)),
        ("007d", timedelta(days=7)),
        ("1H30M", timedelta(hours=1, minutes=30)),
        ("  24h\n", timedelta(hours=24)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("999999999s", timedelta(seconds=999_999_999)),
        ("36500d", MAX_DURATION),
    ],
)
def test_parse_valid_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("10", id="no-unit"),
        pytest.param("h", id="no-number"),
        pytest.param("1.5h", id="fraction"),
        pytest.param("-1h", id="negative"),
        pytest.param("+1h", id="plus-sign"),
        pytest.param("1hour", id="word-unit"),
        pytest.param("1y", id="unknown-unit-year"),
        pytest.param("1ms", id="unknown-unit-ms"),
        pytest.param("1h-", id="trailing-junk"),
        pytest.param("P1D", id="iso-8601"),
        pytest.param("01:30:00", id="clock"),
        pytest.param("1234567890s", id="ten-digit-number"),
        pytest.param("1h\x00", id="nul"),
        pytest.param("1\u200bh", id="zero-width-space"),
    ],
)
def test_parse_invalid_duration_raises_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text)
    assert caught.value.field == "duration"


@pytest.mark.parametrize("text", ["36501d", "5215w", "999999999w", "99999999d" * 3])
def test_duration_over_100_years_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="100 years") as caught:
        parse_duration(text)
    assert caught.value.field == "duration"


@pytest.mark.parametrize("value", [None, 30, b"30d", 1.5])
def test_non_string_raises_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(value)  # type: ignore[arg-type]


def test_huge_input_raises_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        parse_duration("1" * 100_000 + "s")
    with pytest.raises(InvalidInput):
        parse_duration("999999999w" * 10_000)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=500), st.sampled_from("smhdw")),
        min_size=1,
        max_size=5,
    )
)
@settings(max_examples=100)
def test_parts_add_up(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{amount}{unit}" for amount, unit in parts)
    expected = timedelta(seconds=sum(amount * UNIT_SECONDS[unit] for amount, unit in parts))
    assert parse_duration(text) == expected


@given(st.text())
@settings(max_examples=200)
def test_arbitrary_text_raises_only_invalid_input(text: str) -> None:
    try:
        result = parse_duration(text)
    except InvalidInput:
        return
    assert timedelta(0) <= result <= MAX_DURATION


@given(st.text(alphabet="0123456789smhdwSMHDW \t-+.:", max_size=30))
@settings(max_examples=200)
def test_duration_like_text_raises_only_invalid_input(text: str) -> None:
    try:
        result = parse_duration(text)
    except InvalidInput:
        return
    assert timedelta(0) <= result <= MAX_DURATION


def test_only_ascii_digits_count() -> None:
    with pytest.raises(InvalidInput):
        parse_duration("\u0661h")  # ARABIC-INDIC DIGIT ONE
