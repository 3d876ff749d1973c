"""A storage outage under a running ``keyplane serve``: every surface answers a 503,
never a 500 or a traceback, and readiness tells an empty schema from a current one.

The database is one the test creates on the shared PostgreSQL server
(``kp_outage_<random>``) and drops under the server (``pg_terminate_backend``,
then ``DROP DATABASE ... WITH (FORCE)``); the shared ``test`` database is
never touched. Bounded: a few dozen requests, each with a 15 s timeout.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from keyplane.config import Settings, normalize_database_url
from keyplane.core.keys import KeyFormat
from keyplane.service.services import Services
from keyplane.storage import migrate
from keyplane.storage.database import Database
from tests.conftest import POSTGRES_ENV, require_service
from tests.security.processes import serve
from tests.support import Tenant

pytestmark = pytest.mark.slow


@dataclass
class OwnDatabase:
    """A database of the test's own on the shared server, and a connection to drop it."""

    url: str
    name: str
    admin: Engine

    def run(self, *statements: str) -> None:
        with self.admin.connect() as connection:
            for statement in statements:
                connection.execute(text(statement), {"name": self.name})

    def drop(self) -> None:
        self.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name",
            f'DROP DATABASE "{self.name}" WITH (FORCE)',
        )

    def create(self) -> None:
        self.run(f'CREATE DATABASE "{self.name}"')

    def migrate(self) -> None:
        database = Database(self.url)
        migrate.upgrade(database.engine)
        database.dispose()


@pytest.fixture
def own_database() -> Iterator[OwnDatabase]:
    base = make_url(normalize_database_url(require_service(POSTGRES_ENV, "PostgreSQL")))
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"kp_outage_{secrets.token_hex(6)}"
    own = OwnDatabase(base.set(database=name).render_as_string(hide_password=False), name, admin)
    own.create()
    try:
        yield own
    finally:
        own.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _requests(tenant: Tenant, stranger: str) -> list[tuple[str, str, dict[str, object]]]:
    """One request per surface that must reach the database (``stranger`` is a
    well-formed key no process has cached, so the hot path has to look it up)."""
    fresh = {"Authorization": f"Bearer {stranger}"}
    return [
        ("GET", "/api/v1/whoami", {"headers": fresh}),
        ("POST", "/api/v1/verify", {"headers": tenant.headers, "json": {"key": stranger}}),
        ("GET", "/api/v1/projects", {"headers": tenant.headers}),
        ("POST", f"/api/v1/projects/{tenant.project_id}/keys", {
            "headers": tenant.headers, "json": {"name": "during"}}),
        ("GET", "/v0.4/whoami", {"headers": fresh}),
        ("GET", "/v0.4/jobs", {"headers": tenant.headers}),
        ("POST", "/v0.4/jobs", {"headers": tenant.headers, "json": {
            "input": {"qubits": 1, "circuit": [{"gate": "h", "target": 0}]}}}),
        ("POST", "/console/signin", {
            "data": {"email": "o@acme.test", "password": "x" * 12, "csrf_token": "t" * 40},
            "headers": {"Cookie": f"keyplane_csrf={'t' * 40}"}}),
    ]  # fmt: skip


def _check_all_unavailable(client: httpx.Client, tenant: Tenant, stranger: str) -> None:
    for method, path, options in _requests(tenant, stranger):
        response = client.request(method, path, **options)  # type: ignore[arg-type]
        assert response.status_code == 503, (method, path, response.status_code, response.text)
        assert "retry-after" in response.headers, (method, path)
        assert "Traceback" not in response.text
        if path.startswith("/v0.4"):
            assert response.json()["statusCode"] == 503  # IonQ's error shape
        elif path.startswith("/api"):
            assert response.json()["code"] == "DATABASE_UNAVAILABLE"


def _wait_ready(client: httpx.Client, status: int, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while (response := client.get("/readyz")).status_code != status:
        assert time.monotonic() < deadline, (status, response.text)
        time.sleep(0.2)
    return response


def test_if_the_database_is_dropped_then_every_surface_answers_503_without_tracebacks(
    tmp_path: Path, own_database: OwnDatabase
) -> None:
    own_database.migrate()
    services = Services.open(Settings(data_dir=tmp_path, database_url=own_database.url))
    try:
        tenant = Tenant.of(
            services.bootstrap(
                organization_name="Acme", project_name="Default", owner_email="o@acme.test"
            )
        )
    finally:
        services.close()
    log = tmp_path / "server.log"
    stranger = KeyFormat().generate().reveal()
    with (
        serve(tmp_path, own_database.url, log, KEYPLANE_IONQ_WORKERS="1") as server,
        httpx.Client(base_url=server.base, timeout=15) as client,
    ):
        assert client.get("/v0.4/jobs", headers=tenant.headers).status_code == 200
        own_database.drop()
        _wait_ready(client, 503)  # a positive answer is reused for a second
        _check_all_unavailable(client, tenant, stranger)

        # Recreated empty (not migrated): not ready, and requests are still 503s.
        own_database.create()
        empty = _wait_ready(client, 503)
        assert "schema" in empty.json()["detail"]
        _check_all_unavailable(client, tenant, stranger)

        # Migrated again: ready again, without a restart.
        own_database.migrate()
        _wait_ready(client, 200)
    text_of_log = log.read_text()
    assert "Traceback" not in text_of_log, text_of_log[-3000:]
