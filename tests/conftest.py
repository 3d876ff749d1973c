"""Fixtures: the database under test (SQLite always, PostgreSQL when configured),
services on it, an API client, and bootstrapped organizations.

PostgreSQL runs when ``KEYPLANE_TEST_POSTGRES_URL`` is set and skips with the
reason otherwise; with ``KEYPLANE_TEST_REQUIRE_SERVICES=1`` (CI) a missing
service fails instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# Schemathesis (tests/security/test_fuzz.py) imports its OpenAPI generator lazily,
# which pytest's assertion rewriting parses with ast; on CPython 3.11.7 that parse
# fails at random deep in collection ("SystemError: AST constructor recursion
# depth mismatch", a CPython bug fixed in 3.11.8). Importing it here, while the
# stack is shallow, avoids it.
import schemathesis.specs.openapi._hypothesis  # noqa: F401
from fastapi.testclient import TestClient
from sqlalchemy import text
from uvicorn.importer import import_from_string

from keyplane.app import KeyplaneApp
from keyplane.cli.server import APP_FACTORY
from keyplane.config import Settings, normalize_database_url
from keyplane.service.services import Services
from keyplane.storage import migrate
from keyplane.storage.database import Database
from keyplane.storage.models import Base
from tests.support import Clock, Tenant

POSTGRES_ENV = "KEYPLANE_TEST_POSTGRES_URL"
REQUIRE_ENV = "KEYPLANE_TEST_REQUIRE_SERVICES"


def require_service(env: str, what: str) -> str:
    """The URL in ``env``; skip (or fail in CI) when it is unset."""
    url = os.environ.get(env, "").strip()
    if url:
        return url
    message = f"{what} tests need {env} (e.g. .ci/run sets it); skipped"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{env} is required here ({REQUIRE_ENV}=1) but unset")
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is the slow part)."""
    path = tmp_path_factory.mktemp("template") / "keyplane.db"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database.engine)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A private schema on the test PostgreSQL, migrated once, dropped at the end."""
    base = normalize_database_url(require_service(POSTGRES_ENV, "PostgreSQL"))
    schema = f"kp_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = Database(base)
    with admin.engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}options=-csearch_path%3D{schema}"
    database = Database(url)
    migrate.upgrade(database.engine)
    database.dispose()
    try:
        yield url
    finally:
        with admin.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "keyplane.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_schema_url")
    database = Database(url)
    tables = ", ".join(f'"{table.name}"' for table in reversed(Base.metadata.sorted_tables))
    with database.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    database.dispose()
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url)


@pytest.fixture
def services(settings: Settings, clock: Clock) -> Iterator[Services]:
    opened = Services.open(settings, clock=clock)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def tenant(services: Services) -> Tenant:
    return Tenant.of(
        services.bootstrap(
            organization_name="Acme", project_name="Default", owner_email="owner@acme.test"
        )
    )


@pytest.fixture
def other_tenant(services: Services) -> Tenant:
    return Tenant.of(
        services.bootstrap(
            organization_name="Globex", project_name="Main", owner_email="owner@globex.test"
        )
    )


def served_app() -> KeyplaneApp:
    """A new app, built by the factory ``keyplane serve`` names (``APP_FACTORY``), the way
    its workers build theirs: the one assembly, nothing test-only around it."""
    app = import_from_string(APP_FACTORY)()
    assert isinstance(app, KeyplaneApp)
    return app


@pytest.fixture(scope="session")
def app() -> KeyplaneApp:
    """One served app for the whole run (building one costs ~80 ms); each test plugs in
    its services."""
    return served_app()


@pytest.fixture
def client(app: KeyplaneApp, services: Services) -> Iterator[TestClient]:
    app.state.services = services
    try:
        with TestClient(app, client=("203.0.113.7", 50000)) as test_client:
            yield test_client
    finally:
        app.state.services = None
