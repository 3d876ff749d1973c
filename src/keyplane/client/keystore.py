"""Where ``keyplane login`` keeps a key: the OS key store, or a 0600 file.

Keys are stored per server URL (service ``keyplane``, user name the URL), so
logging in to a staging server does not replace the key of production. The
OS key store is reached through the ``keyring`` library (macOS Keychain,
Windows Credential Locker, the Secret Service on Linux desktops). Where
``keyring`` has no such backend (a server, a container, CI), or offers only one
that is no key store (keyrings.alt's plain-text file, any backend below
keyring's "recommended" priority of 1), the key goes to
``credentials.json`` in the Keyplane config directory instead, created with
mode 0600 in a 0700 directory. ``config.json`` beside it remembers the URL of
the last login, so later commands find that server without ``KEYPLANE_URL``.

``keyring`` and ``platformdirs`` are imported only when a key store is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

SERVICE: Final = "keyplane"
CONFIG_DIR_VARIABLE: Final = "KEYPLANE_CONFIG_DIR"
CREDENTIALS_FILE: Final = "credentials.json"
SETTINGS_FILE: Final = "config.json"


def config_dir() -> Path:
    """``KEYPLANE_CONFIG_DIR``, else the platform's user config dir (``~/.config/keyplane``)."""
    explicit = os.environ.get(CONFIG_DIR_VARIABLE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("keyplane", appauthor=False))


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key found in a store, and a description of where (for messages, never the value)."""

    value: str
    where: str


#: keyring's rule of thumb: a priority of one or more is a recommended store; a lower
#: one (keyrings.alt's files, ``fail``, an empty chainer) is a last resort.
RECOMMENDED_PRIORITY: Final = 1
#: Backends that keep secrets readable on disk (or not at all), whatever their priority.
_NOT_A_KEY_STORE: Final = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def _secure(backend: Any) -> bool:
    """A backend that keeps a secret encrypted by the OS (Keychain, Credential Locker,
    Secret Service), not a plain-text file that merely calls itself a keyring."""
    from keyring.backends import chainer

    if isinstance(backend, chainer.ChainerBackend):
        return False  # judged by the backends it chains, in _backend
    if type(backend).__module__.startswith(_NOT_A_KEY_STORE):
        return False
    try:
        return float(backend.priority) >= RECOMMENDED_PRIORITY
    except Exception:  # a backend whose priority cannot be read is not one to trust
        return False


def _candidates() -> list[Any]:
    """keyring's configured backend, or the backends its chainer would try."""
    import keyring
    from keyring.backends import chainer

    try:
        backend = keyring.get_keyring()
        if isinstance(backend, chainer.ChainerBackend):
            return list(backend.backends)
    except Exception:  # a broken keyring configuration must not break the client
        return []
    return [backend]


def _backend() -> Any | None:
    """The OS key store keyring offers, or None when it offers none that keeps a secret
    safe: then the key goes to the 0600 file, and the messages say so."""
    return next((backend for backend in _candidates() if _secure(backend)), None)


def _name(backend: Any) -> str:
    return str(getattr(backend, "name", type(backend).__name__))


def backend_name() -> str | None:
    """The OS key store's name for messages, or None when there is none."""
    backend = _backend()
    return None if backend is None else _name(backend)


def passed_over() -> list[str]:
    """The names of keyring backends not used because they are no key store (a
    plain-text file, say), for an honest message."""
    return [
        _name(backend)
        for backend in _candidates()
        if not _secure(backend)
        and not type(backend).__module__.startswith(
            ("keyring.backends.fail", "keyring.backends.chainer")
        )
    ]


class KeyStore:
    """The stores ``keyplane login`` writes and the SDK reads, for one config dir."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else config_dir()

    @property
    def credentials_path(self) -> Path:
        return self.directory / CREDENTIALS_FILE

    @property
    def settings_path(self) -> Path:
        return self.directory / SETTINGS_FILE

    # -- keys ----------------------------------------------------------------

    def load(self, url: str) -> StoredKey | None:
        """The key stored for ``url``: the OS key store first, then the fallback file."""
        backend = _backend()
        if backend is not None:
            try:
                value = backend.get_password(SERVICE, url)
            except Exception:  # a locked or unreachable store: try the file
                value = None
            if value:
                return StoredKey(value, f"the system key store ({backend_name()})")
        value = self._read(self.credentials_path).get("keys", {}).get(url)
        if isinstance(value, str) and value:
            return StoredKey(value, str(self.credentials_path))
        return None

    def save(self, url: str, key: str) -> str:
        """Store ``key`` for ``url``; returns where it went (for the user)."""
        backend = _backend()
        if backend is not None:
            try:
                backend.set_password(SERVICE, url, key)
            except Exception:  # noqa: S110 - falls back to the 0600 file below, and says so
                pass
            else:
                self._forget_in_file(url)
                return f"the system key store ({backend_name()})"
        data = self._read(self.credentials_path)
        keys = data.get("keys")
        keys = dict(keys) if isinstance(keys, dict) else {}
        keys[url] = key
        self._write(self.credentials_path, {"version": 1, "keys": keys})
        return str(self.credentials_path)

    def delete(self, url: str) -> list[str]:
        """Forget the key for ``url`` everywhere; returns the places it was removed from."""
        removed = []
        backend = _backend()
        if backend is not None:
            with contextlib.suppress(Exception):  # keyring raises when there is nothing to delete
                if backend.get_password(SERVICE, url):
                    backend.delete_password(SERVICE, url)
                    removed.append(f"the system key store ({backend_name()})")
        if self._forget_in_file(url):
            removed.append(str(self.credentials_path))
        return removed

    def _forget_in_file(self, url: str) -> bool:
        data = self._read(self.credentials_path)
        keys = data.get("keys")
        if not isinstance(keys, dict) or url not in keys:
            return False
        keys = {name: value for name, value in keys.items() if name != url}
        self._write(self.credentials_path, {"version": 1, "keys": keys})
        return True

    # -- the URL of the last login --------------------------------------------

    def default_url(self) -> str | None:
        url = self._read(self.settings_path).get("url")
        return url if isinstance(url, str) and url else None

    def set_default_url(self, url: str | None) -> None:
        data = self._read(self.settings_path)
        if url is None:
            if "url" not in data:
                return
            data.pop("url")
        else:
            data["url"] = url
        self._write(self.settings_path, data)

    # -- files -----------------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        """Write atomically, readable by the owner only (the file may hold a key)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", dir=self.directory)
        try:
            os.chmod(temporary, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2)
                handle.write("\n")
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
