"""Opaque pagination cursors and the page-size limit."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.core.errors import InvalidInput
from keyplane.service.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    check_limit,
    decode_cursor,
    encode_cursor,
)

# decode_cursor accepts up to 18 digits.
MAX_PK = 10**18 - 1


def raw_cursor(text: str) -> str:
    """A cursor built by hand around arbitrary ``text``, encoded like real ones."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@given(st.integers(min_value=0, max_value=MAX_PK))
@settings(max_examples=200)
def test_cursor_round_trips(pk: int) -> None:
    assert decode_cursor(encode_cursor(pk)) == pk


@given(st.integers(min_value=0, max_value=MAX_PK))
@settings(max_examples=100)
def test_cursor_is_url_safe_and_unpadded(pk: int) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", encode_cursor(pk))


@pytest.mark.parametrize("pk", [0, 1, 7, 50, 12345, MAX_PK])
def test_cursor_round_trips_examples(pk: int) -> None:
    assert decode_cursor(encode_cursor(pk)) == pk


def test_cursor_is_opaque() -> None:
    assert "12345" not in encode_cursor(12345)


def test_no_cursor_means_first_page() -> None:
    assert decode_cursor(None) is None


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("!!!!", id="not-base64"),
        pytest.param("a", id="impossible-length"),
        pytest.param("12345", id="plain-number"),
        pytest.param(raw_cursor("v2:5"), id="other-version"),
        pytest.param(raw_cursor("v1:"), id="no-digits"),
        pytest.param(raw_cursor("v1:-5"), id="negative"),
        pytest.param(raw_cursor("v1:+5"), id="plus-sign"),
        pytest.param(raw_cursor("v1: 5"), id="space"),
        pytest.param(raw_cursor("v1:5.0"), id="fraction"),
        pytest.param(raw_cursor("v1:abc"), id="letters"),
        pytest.param(raw_cursor("v1:1_000"), id="underscores"),
        pytest.param(raw_cursor("v1:" + "9" * 19), id="nineteen-digits"),
        pytest.param(raw_cursor("v1:²"), id="superscript-digit"),
        pytest.param(raw_cursor("v1:٣"), id="arabic-indic-digit"),
        pytest.param(base64.urlsafe_b64encode(b"v1:\xff").decode(), id="not-ascii-inside"),
        pytest.param("é" * 8, id="not-ascii"),
        pytest.param(encode_cursor(1) + "A" * 64, id="too-long"),
        pytest.param("\x00" * 8, id="nul"),
    ],
)
def test_foreign_cursor_raises_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(cursor)
    assert caught.value.field == "cursor"


@given(st.text())
@settings(max_examples=200)
def test_arbitrary_text_raises_only_invalid_input(cursor: str) -> None:
    try:
        pk = decode_cursor(cursor)
    except InvalidInput:
        return
    assert isinstance(pk, int)
    assert 0 <= pk <= MAX_PK


@given(st.binary(max_size=40))
@settings(max_examples=200)
def test_any_encoded_payload_raises_only_invalid_input(payload: bytes) -> None:
    cursor = base64.urlsafe_b64encode(b"v1:" + payload).decode()
    try:
        pk = decode_cursor(cursor)
    except InvalidInput:
        return
    assert isinstance(pk, int)
    assert 0 <= pk <= MAX_PK


@pytest.mark.parametrize("limit", [1, DEFAULT_LIMIT, MAX_LIMIT])
def test_limit_in_range_is_returned(limit: int) -> None:
    assert check_limit(limit) == limit


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, 10**9])
def test_limit_out_of_range_raises_invalid_input(limit: int) -> None:
    with pytest.raises(InvalidInput, match=str(MAX_LIMIT)) as caught:
        check_limit(limit)
    assert caught.value.field == "limit"


def test_default_limit_is_allowed() -> None:
    assert 1 <= DEFAULT_LIMIT <= MAX_LIMIT
