"""Public identifiers: a type prefix and 16 random base62 characters (~95 bits)."""

from __future__ import annotations

import secrets
from typing import Final

from keyplane.core.keys import BASE62_ALPHABET

ID_RANDOM_LENGTH: Final = 16


def new_id(kind: str) -> str:
    """A new public id such as ``key_3kTq0v...``; ``kind`` is the type prefix."""
    return f"{kind}_" + "".join(secrets.choice(BASE62_ALPHABET) for _ in range(ID_RANDOM_LENGTH))
