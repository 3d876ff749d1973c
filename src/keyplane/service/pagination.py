"""Opaque pagination cursors: newest first, resumed after the last row's ``pk``."""

from __future__ import annotations

import base64
import binascii
from typing import Final

from keyplane.core.errors import InvalidInput

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
