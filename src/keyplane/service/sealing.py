"""Secrets the server must read back (a TOTP secret, an SSO client secret, mail
holding a reset link) are stored sealed: Fernet (AES-128-CBC and HMAC-SHA256,
from ``cryptography``) under a key the database does not hold.

The keys come from ``KEYPLANE_SECRET_KEY`` (comma-separated, newest first: the
first seals, every one opens, so a key is rotated by putting a new one in front)
or, when unset, from ``secret.key`` in the data directory, made on first use
with mode 0600. Instances that share a database must share the key: set the
variable for more than one machine.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from keyplane.config import ConfigError, Settings

logger = logging.getLogger("keyplane.sealing")

KEY_FILENAME: Final = "secret.key"
MIN_KEY_LENGTH: Final = 32
_CONTEXT: Final = b"keyplane-sealing-v1"


class SealBroken(Exception):
    """A sealed value that no configured key opens (wrong key, or tampered with)."""


class Sealer:
    """Seals and opens short secrets. Holds its keys out of every repr."""

    __slots__ = ("_fernet",)

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError("no secret key to seal with")
        for key in keys:
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigError(
                    f"KEYPLANE_SECRET_KEY: each key has at least {MIN_KEY_LENGTH} characters "
                    "(e.g. `python3 -c 'import secrets; print(secrets.token_hex(32))'`)"
                )
        self._fernet = MultiFernet([Fernet(_derive(key)) for key in keys])

    def __repr__(self) -> str:
        return "Sealer(...)"

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SealBroken(
                "a sealed value could not be opened with the configured keys"
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        if not settings.secret_keys and not settings.is_sqlite:
            # Another machine on the same PostgreSQL has its own file, and could open
            # none of this one's sealed values (TOTP secrets, queued mail).
            logger.warning(
                "KEYPLANE_SECRET_KEY is unset: sealing with %s; every instance that "
                "shares this database needs the same key, so set KEYPLANE_SECRET_KEY",
                settings.data_dir / KEY_FILENAME,
            )
        return cls(settings.secret_keys or (key_file_secret(settings.data_dir),))


def _derive(key: str) -> bytes:
    """Any long string as a Fernet key (32 bytes, urlsafe base64)."""
    digest = hashlib.sha256(_CONTEXT + b"\0" + key.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest)


def key_file_secret(data_dir: Path) -> str:
    """The data directory's key, made once (O_EXCL: two processes starting together
    agree on the first one written)."""
    path = data_dir / KEY_FILENAME
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    return _read_key(path)


def _read_key(path: Path) -> str:
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{path} holds no usable secret key; delete it to make a new one")
    return key
