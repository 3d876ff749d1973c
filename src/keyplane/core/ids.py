"""Public identifiers: a type prefix and 16 random base62 characters (~95 bits)."""

from __future__ import annotations

import re
import secrets
from typing import Final

from keyplane.core.keys import BASE62_ALPHABET

ID_RANDOM_LENGTH: Final = 16
_ID_RE: Final = re.compile(rf"[a-z]{{2,8}}_[0-9A-Za-z]{{{ID_RANDOM_LENGTH}}}")


def new_id(kind: str) -> str:
    """A new public id such as ``key_3kTq0v...``; ``kind`` is the type prefix."""
    return f"{kind}_" + "".join(secrets.choice(BASE62_ALPHABET) for _ in range(ID_RANDOM_LENGTH))


def is_id(text: str, kind: str | None = None) -> bool:
    """True if ``text`` has the shape of a public id (of ``kind``, when given).

    Look-ups check this first: a string that cannot be an id is simply not
    found, and never reaches the database (PostgreSQL refuses NUL bytes in text).
    """
    if not isinstance(text, str) or not _ID_RE.fullmatch(text):
        return False
    return kind is None or text.startswith(f"{kind}_")
