"""Where the client finds its key and server, first hit wins."""

from __future__ import annotations

import stat
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import PasswordDeleteError
from keyrings.alt.file import PlaintextKeyring

from keyplane.client.errors import MissingAPIKey
from keyplane.client.keystore import KeyStore, backend_name
from keyplane.client.resolution import DEFAULT_URL, resolve_key, resolve_url
from keyplane.core.keys import KeyFormat

URL = "http://keys.example.test:8000"


@pytest.fixture
def keys() -> list[str]:
    return [KeyFormat().generate().reveal() for _ in range(4)]


class MemoryKeyring(KeyringBackend):
    """A backend with a recommended priority, as the OS key stores have (there is none
    on a CI machine); it keeps secrets in this process only."""

    priority = 5

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


@pytest.fixture
def os_keyring() -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


@pytest.fixture
def plaintext_keyring() -> PlaintextKeyring:
    """keyrings.alt's plain-text file (the dev extra), under the test's XDG_DATA_HOME."""
    backend = PlaintextKeyring()
    keyring.set_keyring(backend)
    return backend


def test_the_argument_wins_over_everything(keys: list[str], isolated_key_stores: Path) -> None:
    (isolated_key_stores / ".env").write_text(f"KEYPLANE_API_KEY={keys[2]}\n")
    KeyStore().save(URL, keys[3])
    resolved = resolve_key(keys[0], URL, environ={"KEYPLANE_API_KEY": keys[1]})
    assert resolved.secret.reveal() == keys[0]
    assert resolved.source == "the api_key argument"


def test_the_environment_wins_over_dotenv_and_the_store(
    keys: list[str], isolated_key_stores: Path
) -> None:
    (isolated_key_stores / ".env").write_text(f"KEYPLANE_API_KEY={keys[2]}\n")
    KeyStore().save(URL, keys[3])
    resolved = resolve_key(None, URL, environ={"KEYPLANE_API_KEY": keys[1]})
    assert resolved.secret.reveal() == keys[1]
    assert "KEYPLANE_API_KEY" in resolved.source


def test_dotenv_wins_over_the_store_and_is_not_copied_into_the_environment(
    keys: list[str], isolated_key_stores: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated_key_stores / ".env").write_text(f"# comment\nOTHER=1\nKEYPLANE_API_KEY='{keys[2]}'\n")
    KeyStore().save(URL, keys[3])
    resolved = resolve_key(None, URL, environ={})
    assert resolved.secret.reveal() == keys[2]
    assert resolved.source == "KEYPLANE_API_KEY in ./.env"
    import os

    assert "OTHER" not in os.environ


def test_the_fallback_file_is_used_without_a_keyring_backend(keys: list[str]) -> None:
    assert backend_name() is None  # the tests' fail backend
    store = KeyStore()
    where = store.save(URL, keys[3])
    assert where == str(store.credentials_path)
    assert stat.S_IMODE(store.credentials_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    resolved = resolve_key(None, URL, environ={})
    assert resolved.secret.reveal() == keys[3]
    assert resolved.source == str(store.credentials_path)
    # Another server's key is not this server's key.
    with pytest.raises(MissingAPIKey):
        resolve_key(None, "http://other.example.test", environ={})


def test_a_keyring_backend_holds_the_key_and_no_file_does(
    keys: list[str], os_keyring: MemoryKeyring
) -> None:
    store = KeyStore()
    where = store.save(URL, keys[0])
    assert "system key store" in where
    assert not store.credentials_path.exists()
    assert os_keyring.get_password("keyplane", URL) == keys[0]
    assert resolve_key(None, URL, environ={}).secret.reveal() == keys[0]
    assert store.delete(URL) == [where]
    assert os_keyring.get_password("keyplane", URL) is None
    with pytest.raises(MissingAPIKey):
        resolve_key(None, URL, environ={})


def test_a_plain_text_keyring_is_not_called_a_key_store_and_gets_no_key(
    keys: list[str], plaintext_keyring: PlaintextKeyring
) -> None:
    from keyplane.client.keystore import passed_over

    assert backend_name() is None
    assert passed_over() == [str(plaintext_keyring.name)]
    store = KeyStore()
    where = store.save(URL, keys[0])
    assert where == str(store.credentials_path)
    assert stat.S_IMODE(store.credentials_path.stat().st_mode) == 0o600
    assert plaintext_keyring.get_password("keyplane", URL) is None
    assert (
        not Path(plaintext_keyring.file_path).exists()
        or keys[0] not in Path(plaintext_keyring.file_path).read_text()
    )
    assert resolve_key(None, URL, environ={}).source == str(store.credentials_path)
    from keyplane.client.keystore import passed_over

    assert passed_over() == [str(plaintext_keyring.name)]


@pytest.mark.parametrize("priority", [0.5, 0.9])
def test_a_backend_below_the_recommended_priority_is_not_a_key_store(priority: float) -> None:
    low = type("LowKeyring", (MemoryKeyring,), {"priority": priority})
    keyring.set_keyring(low())
    assert backend_name() is None


def test_a_chainer_uses_only_a_recommended_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring.backend
    from keyring.backends import chainer

    def only_files(backend: object) -> bool:  # what a headless machine with the dev extra has
        return type(backend).__module__.startswith("keyrings.alt")

    monkeypatch.setattr(keyring.backend, "_limit", only_files)
    keyring.set_keyring(chainer.ChainerBackend())
    assert chainer.ChainerBackend.backends  # it does chain something
    assert backend_name() is None
    monkeypatch.setattr(keyring.backend, "_limit", None)
    assert backend_name() is not None  # a chained recommended one (defined in this file)


def test_missing_key_names_the_variable_and_how_to_set_it_for_the_users_shell() -> None:
    with pytest.raises(MissingAPIKey) as caught:
        resolve_key(None, URL, environ={"SHELL": "/usr/bin/zsh"})
    message = str(caught.value)
    assert "KEYPLANE_API_KEY" in message
    assert "~/.zshrc" in message
    assert "export KEYPLANE_API_KEY=" in message
    assert "keyplane login" in message


def test_an_empty_variable_counts_as_unset(keys: list[str]) -> None:
    KeyStore().save(URL, keys[0])
    assert resolve_key(None, URL, environ={"KEYPLANE_API_KEY": "  "}).secret.reveal() == keys[0]


def test_url_resolution_order(isolated_key_stores: Path) -> None:
    store = KeyStore()
    assert resolve_url(None, environ={}) == DEFAULT_URL
    store.set_default_url("http://remembered.test")
    assert resolve_url(None, environ={}) == "http://remembered.test"
    (isolated_key_stores / ".env").write_text("KEYPLANE_URL=http://dotenv.test/\n")
    assert resolve_url(None, environ={}) == "http://dotenv.test"
    assert resolve_url(None, environ={"KEYPLANE_URL": "https://env.test"}) == "https://env.test"
    assert resolve_url("http://arg.test", environ={"KEYPLANE_URL": "https://env.test"}) == (
        "http://arg.test"
    )


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:8000", "http://user:secret@host", "http://"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        resolve_url(url, environ={})


def test_resolved_key_repr_shows_only_the_hint(keys: list[str]) -> None:
    resolved = resolve_key(keys[0], URL)
    assert keys[0] not in repr(resolved)
    assert keys[0] not in str(resolved)
    assert keys[0][-4:] in repr(resolved)


def test_a_fail_backend_is_not_mistaken_for_a_key_store() -> None:
    keyring.set_keyring(fail.Keyring())
    assert backend_name() is None


class LockedKeyring(MemoryKeyring):
    """A key store that refuses to keep secrets, as a locked desktop keyring does."""

    def set_password(self, service: str, username: str, password: str) -> None:
        from keyring.errors import PasswordSetError

        raise PasswordSetError("the collection is locked")


def test_a_key_store_that_refuses_the_key_falls_back_to_the_file(keys: list[str]) -> None:
    keyring.set_keyring(LockedKeyring())
    store = KeyStore()
    assert store.save(URL, keys[0]) == str(store.credentials_path)
    assert resolve_key(None, URL, environ={}).secret.reveal() == keys[0]
