"""Opaque pagination cursors: newest first, resumed after the last row's ``pk``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from keyplane.core.errors import InvalidInput
from keyplane.service.records import Page

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
_VERSION: Final = "v1:"


def encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(f"{_VERSION}{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The ``pk`` a cursor resumes after; :class:`InvalidInput` if it is not one of ours."""
    if cursor is None:
        return None
    try:
        if len(cursor) > 64:
            raise ValueError
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not text.startswith(_VERSION):
            raise ValueError
        digits = text[len(_VERSION) :]
        if not digits.isdigit() or len(digits) > 18:
            raise ValueError
        return int(digits)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "the cursor is not valid: pass back next_cursor unchanged", field="cursor"
        ) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


class _Row(Protocol):
    pk: Any


R = TypeVar("R", bound=_Row)
T = TypeVar("T")
Q = TypeVar("Q", bound=Select[Any])


def newest_first(query: Q, pk: InstrumentedAttribute[int], cursor: str | None, limit: int) -> Q:
    """``query`` newest first from after the cursor's row, one row more than a page
    (the extra row says whether there is a next page)."""
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(pk < after)
    return query.order_by(pk.desc()).limit(limit + 1)


def page_of(rows: Sequence[R], limit: int, record: Callable[[R], T]) -> Page[T]:
    """The page of at most ``limit`` records that :func:`newest_first`'s rows make."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(tuple(record(row) for row in rows), encode_cursor(rows[-1].pk) if more else None)
