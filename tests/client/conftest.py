from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplane.config import Settings
from keyplane.service.services import Services
from tests.live import LiveServer, live_server


@pytest.fixture(scope="module")
def server(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One real server per test module, on its own SQLite file."""
    directory = tmp_path_factory.mktemp("server")
    shutil.copy(sqlite_template, directory / "keyplane.db")
    settings = Settings(data_dir=directory, database_url=f"sqlite:///{directory / 'keyplane.db'}")
    services = Services.open(settings)
    try:
        with live_server(services) as running:
            yield running
    finally:
        services.close()


@pytest.fixture(autouse=True)
def isolated_key_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the real key store, config dir or a stray .env."""
    import keyring
    from keyring.backends import fail

    for name in ("KEYPLANE_API_KEY", "KEYPLANE_URL"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KEYPLANE_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)
