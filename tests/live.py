"""A real Keyplane server for client-side tests: Uvicorn in a thread on a free loopback port.

The SDK, the CLI's key-holder commands and the remote middleware talk to it
over real HTTP; tests create organizations and keys through the service layer
of the same process.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from keyplane.app import create_app
from keyplane.cli.connections import ConnectionLimits
from keyplane.cli.server import ServingConfig, server_options
from keyplane.config import Settings
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from tests.support import Tenant


@contextmanager
def serve_in_thread(app: Any, settings: Settings | None = None) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 (a free port) until the block ends; yields its URL.
    Uvicorn runs as ``keyplane serve`` runs it (``cli/server.py``), in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The Uvicorn of ``keyplane serve``: its options and connection guard.
    settings = settings or Settings(data_dir=Path("unused"), database_url="sqlite:///unused")
    options = {**server_options(settings), "timeout_graceful_shutdown": 5}
    config = ServingConfig(app, limits=ConnectionLimits.of(settings), lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@dataclass
class LiveServer:
    """A running Keyplane server and the services behind it."""

    url: str
    services: Services

    def tenant(self) -> Tenant:
        """A new organization with its own management key (scope ``*``)."""
        return Tenant.of(
            self.services.bootstrap(
                organization_name=f"Org {secrets.token_hex(4)}",
                project_name="Default",
                owner_email=f"owner-{secrets.token_hex(4)}@example.test",
            )
        )

    def key(self, tenant: Tenant, *scopes: str, name: str = "test key") -> tuple[str, str]:
        """A new key of ``tenant``'s project with ``scopes``: (key id, key value)."""
        caller = Caller(tenant.organization_id, ("*",), Actor.operator())
        created = self.services.keys.create(caller, tenant.project_id, name=name, scopes=scopes)
        return created.record.id, created.secret.reveal()

    def revoke(self, tenant: Tenant, key_id: str) -> None:
        caller = Caller(tenant.organization_id, ("*",), Actor.operator())
        self.services.keys.revoke(caller, key_id)


@contextmanager
def live_server(services: Services) -> Iterator[LiveServer]:
    services.start()
    with serve_in_thread(create_app(services), services.settings) as url:
        yield LiveServer(url, services)


# -- fixtures (imported by the conftest of each suite that needs them) ---------


@pytest.fixture(scope="module")
def server(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
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


@pytest.fixture
def isolated_key_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No test reads or writes the real key store, config dir or a stray .env.

    keyring gets its "no backend" backend unless a test picks another; the
    config dir and HOME are under ``tmp_path``; the working directory is a new,
    empty one. Yields that working directory.
    """
    import keyring
    from keyring.backends import fail

    for name in ("KEYPLANE_API_KEY", "KEYPLANE_URL", "KEYPLANE_VERIFY_MODE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("KEYPLANE_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config-xdg"))
    monkeypatch.chdir(work)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield work
    finally:
        keyring.set_keyring(previous)


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for a child process that cannot see any real key or key store."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KEYPLANE_", "PYTHON_KEYRING"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        KEYPLANE_CONFIG_DIR=str(home / ".config" / "keyplane"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        SHELL="/bin/bash",
    )
    env.update(extra)
    return env
