"""The API key format, its checksum, hashing and the masked secret type.

A key is ``<prefix>_`` + 30 random base62 characters + 6 base62 characters of
the CRC32 of those 30 (the design GitHub uses for its tokens). The checksum lets
a scanner tell a real-looking key from noise offline, and lets the verifier
reject a mistyped or made-up key without touching storage.

Only the SHA-256 of the whole key is stored. Keys carry ~178 bits of entropy,
so a fast hash is as safe as a password hasher and a thousand times cheaper
(see docs/security.md).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Final

from keyplane.core.errors import InvalidInput, MalformedKey

BASE62_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH: Final = 30
CHECKSUM_LENGTH: Final = 6
BODY_LENGTH: Final = RANDOM_LENGTH + CHECKSUM_LENGTH
DEFAULT_PREFIX: Final = "kp"
MAX_KEY_LENGTH: Final = 64
HINT_TAIL: Final = 4

_PREFIX_RE: Final = re.compile(r"[a-z][a-z0-9]{0,15}")
_BASE62_SET: Final = frozenset(BASE62_ALPHABET)


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a key: 1-16 lowercase letters and digits."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise InvalidInput(
            "a key prefix is 1 to 16 lowercase letters or digits, starting with a letter",
            field="prefix",
        )
    return prefix


def encode_base62(number: int, width: int) -> str:
    """Encode a non-negative integer in base62, left-padded with zeros to ``width``."""
    if number < 0:
        raise ValueError("base62 encodes non-negative integers only")
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62_ALPHABET[remainder])
    encoded = "".join(reversed(digits)).rjust(width, "0")
    if len(encoded) > width:
        raise ValueError(f"{number} does not fit in {width} base62 digits")
    return encoded


def checksum(random_part: str) -> str:
    """The 6-character base62 CRC32 of the random part of a key."""
    return encode_base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


class SecretKey:
    """A key value that never shows itself by accident.

    ``repr``, ``str`` and formatting show only the hint (``kp_...abcd``); the
    value comes out only through :meth:`reveal`, so a key cannot slip into a
    log line, an exception or a traceback's locals rendering unnoticed.
    """

    __slots__ = ("_prefix", "_value")

    def __init__(self, value: str, prefix: str) -> None:
        self._value = value
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def hint(self) -> str:
        """The prefix and the last four characters, safe to show anywhere."""
        return make_hint(self._value, self._prefix)

    def reveal(self) -> str:
        """The key value itself. Only for the one response that hands it out."""
        return self._value

    def hash(self) -> str:
        """The stored digest of this key."""
        return hash_key(self._value)

    def __repr__(self) -> str:
        return f"SecretKey({self.hint!r})"

    def __str__(self) -> str:
        return self.hint

    def __format__(self, format_spec: str) -> str:
        return format(self.hint, format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self.hash())

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would copy the secret into caches and queues; refuse it.
        raise TypeError("SecretKey cannot be pickled")


@dataclass(frozen=True, slots=True)
class KeyFormat:
    """The key format of one deployment (only the prefix is configurable)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    @property
    def length(self) -> int:
        return len(self.prefix) + 1 + BODY_LENGTH

    def generate(self) -> SecretKey:
        """A new key from the operating system's CSPRNG."""
        random_part = "".join(secrets.choice(BASE62_ALPHABET) for _ in range(RANDOM_LENGTH))
        return SecretKey(f"{self.prefix}_{random_part}{checksum(random_part)}", self.prefix)

    def parse(self, value: str) -> SecretKey:
        """Check ``value`` is a well-formed key of this deployment.

        Raises :class:`MalformedKey` (and nothing else) for any other input. The
        check is offline: a key that passes may still be unknown or revoked.
        """
        if not isinstance(value, str):
            raise MalformedKey("not a string")
        if len(value) != self.length:
            raise MalformedKey("wrong length")
        head, separator, body = value.partition("_")
        if not separator or head != self.prefix:
            raise MalformedKey("wrong prefix")
        if not _BASE62_SET.issuperset(body):
            raise MalformedKey("characters outside the base62 alphabet")
        random_part, given = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
        if not secrets.compare_digest(checksum(random_part), given):
            raise MalformedKey("checksum mismatch")
        return SecretKey(value, self.prefix)

    def is_key(self, value: str) -> bool:
        """True if ``value`` is a well-formed key of this deployment."""
        try:
            self.parse(value)
        except MalformedKey:
            return False
        return True

    def pattern(self) -> re.Pattern[str]:
        """A regex that finds candidate keys of this format in text."""
        return re.compile(
            rf"(?<![A-Za-z0-9_]){re.escape(self.prefix)}_[0-9A-Za-z]{{{BODY_LENGTH}}}(?![A-Za-z0-9])"
        )

    def redact(self, text: str) -> str:
        """Replace every checksum-valid key in ``text`` with its hint.

        Unlike :meth:`pattern`, this looks at every place a key could start,
        glued to other characters too (``Bearerkp_...``, ``xkp_...``, a key
        followed by more letters): what is masked must not depend on its
        neighbours. The checksum keeps ordinary words from being touched.
        """

        def hint_if_key(match: re.Match[str]) -> str:
            value = match.group()
            return make_hint(value, self.prefix) if self.is_key(value) else value

        anywhere = re.compile(rf"{re.escape(self.prefix)}_[0-9A-Za-z]{{{BODY_LENGTH}}}")
        return anywhere.sub(hint_if_key, text)


def hash_key(value: str) -> str:
    """SHA-256 of a key value, hex encoded: what storage keeps and looks up by."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def make_hint(value: str, prefix: str) -> str:
    """``kp_...abcd``: the prefix and the last four characters of a key."""
    return f"{prefix}_...{value[-HINT_TAIL:]}"
