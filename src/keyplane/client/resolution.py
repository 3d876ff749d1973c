"""Finding the key and the server a client uses.

The key, first hit wins:

1. the ``api_key=`` argument;
2. the ``KEYPLANE_API_KEY`` environment variable;
3. ``KEYPLANE_API_KEY`` in a ``.env`` file in the working directory (read, never
   copied into ``os.environ``);
4. the OS key store, as ``keyplane login`` left it (for the server's URL);
5. the 0600 file ``keyplane login`` writes when there is no OS key store.

The server: the ``base_url=`` argument, ``KEYPLANE_URL``, ``KEYPLANE_URL`` in the
``.env`` file, the URL of the last ``keyplane login``, then ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from keyplane.client.errors import MissingAPIKey
from keyplane.client.keystore import KeyStore
from keyplane.client.shells import KEY_VARIABLE, URL_VARIABLE, missing_key_help
from keyplane.core.keys import SecretKey

DEFAULT_URL: Final = "http://127.0.0.1:8000"
DOTENV_FILE: Final = ".env"


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """A key and where it was found. ``repr`` shows the hint, never the value."""

    secret: SecretKey
    source: str

    def __repr__(self) -> str:
        return f"ResolvedKey({self.secret.hint!r}, source={self.source!r})"


def secret(value: str) -> SecretKey:
    """Wrap any key string so it cannot be printed by accident."""
    head, separator, _ = value.partition("_")
    prefix = head if separator and 0 < len(head) <= 16 and head.isalnum() else "key"
    return SecretKey(value, prefix)


def normalize_url(url: str) -> str:
    """``https://host:port/prefix`` without a trailing slash; refuse what is not an http URL."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{URL_VARIABLE} (or base_url) must be an http:// or https:// URL, e.g. {DEFAULT_URL}"
        )
    if parts.username or parts.password:
        raise ValueError("the Keyplane URL must not contain a user name or password")
    return url


def read_dotenv(directory: Path | None = None) -> Mapping[str, str | None]:
    """The variables of ``.env`` in ``directory`` (the working directory), or nothing."""
    path = (directory or Path.cwd()) / DOTENV_FILE
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    try:
        return dotenv_values(path)
    except (OSError, UnicodeDecodeError):
        return {}


def resolve_url(
    base_url: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str | None] | None = None,
    store: KeyStore | None = None,
) -> str:
    env = os.environ if environ is None else environ
    for candidate in (
        base_url,
        env.get(URL_VARIABLE),
        (read_dotenv() if dotenv is None else dotenv).get(URL_VARIABLE),
    ):
        if candidate and candidate.strip():
            return normalize_url(candidate)
    remembered = (store or KeyStore()).default_url()
    return normalize_url(remembered) if remembered else DEFAULT_URL


def resolve_key(
    api_key: str | SecretKey | None,
    url: str,
    *,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str | None] | None = None,
    store: KeyStore | None = None,
    use_store: bool = True,
) -> ResolvedKey:
    """The key to send to ``url``; :class:`MissingAPIKey` when there is none."""
    if isinstance(api_key, SecretKey):
        return ResolvedKey(api_key, "the api_key argument")
    if api_key is not None:
        if not api_key.strip():
            raise MissingAPIKey("the api_key argument is empty")
        return ResolvedKey(secret(api_key.strip()), "the api_key argument")
    env = os.environ if environ is None else environ
    value = env.get(KEY_VARIABLE, "").strip()
    if value:
        return ResolvedKey(secret(value), f"the environment variable {KEY_VARIABLE}")
    values = read_dotenv() if dotenv is None else dotenv
    value = (values.get(KEY_VARIABLE) or "").strip()
    if value:
        return ResolvedKey(secret(value), f"{KEY_VARIABLE} in ./{DOTENV_FILE}")
    looked = [f"the {KEY_VARIABLE} environment variable", f"./{DOTENV_FILE}"]
    if use_store:
        store = store or KeyStore()
        stored = store.load(url)
        if stored is not None:
            return ResolvedKey(secret(stored.value.strip()), stored.where)
        looked.append(f"the key store for {url} (keyplane login)")
    raise MissingAPIKey(
        f"No Keyplane API key found (looked in {', '.join(looked)}).\n"
        + missing_key_help(environ=env)
    )
