"""Where a key comes from on a request, and where it must never come from.

Accepted, in this order: ``Authorization: Bearer <key>``, ``Authorization:
apiKey <key>`` (the IonQ convention), ``X-API-Key: <key>``. Never the URL: a
query string ends up in proxy logs, browser history and Referer headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

from keyplane.core.keys import KeyFormat

AUTHORIZATION_SCHEMES: Final = ("bearer", "apikey")
KEY_HEADER: Final = "x-api-key"
#: Query parameters people try to send keys in; any of them is refused.
QUERY_KEY_NAMES: Final = frozenset(
    {"api_key", "apikey", "api-key", "key", "token", "access_token", "x-api-key", "auth"}
)
MAX_CREDENTIAL_LENGTH: Final = 256


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a request sends, or None. Headers are looked up case-insensitively."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() in AUTHORIZATION_SCHEMES and credential:
            return credential[:MAX_CREDENTIAL_LENGTH]
    header_key = headers.get(KEY_HEADER)
    if header_key and header_key.strip():
        return header_key.strip()[:MAX_CREDENTIAL_LENGTH]
    return None


def key_in_url(path: str, query_string: str, key_format: KeyFormat) -> bool:
    """True if the URL carries a key, in its path (``/keys/kp_...``) or its query string."""
    if key_format.redact(path) != path:
        return True
    return key_in_query(query_string, key_format)


def key_in_query(query_string: str, key_format: KeyFormat) -> bool:
    """True if the query string carries (or tries to carry) a key."""
    if not query_string:
        return False
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name.lower() in QUERY_KEY_NAMES:
            return True
        # A key may come as a value (?q=<key>) or bare, as a name (?<key>).
        if key_format.is_key(value.strip()) or key_format.is_key(name.strip()):
            return True
    return False
