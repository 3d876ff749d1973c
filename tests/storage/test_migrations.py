from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from keyplane.config import Settings, normalize_database_url
from keyplane.service.services import Services
from keyplane.storage import migrate
from keyplane.storage.database import Database
from keyplane.storage.migrate import SchemaBehind
from keyplane.storage.models import Base
from tests.conftest import POSTGRES_ENV, require_service

TABLES = {
    "organizations",
    "users",
    "memberships",
    "projects",
    "api_keys",
    "audit_events",
    "console_sessions",
    "invitations",
    "jobs",
    "key_changes",
    "key_usage",
    "key_leaks",
}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with nothing in it (a fresh SQLite file, or a fresh PostgreSQL schema)."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'empty.db'}")
        yield database
        database.dispose()
        return
    base = normalize_database_url(require_service(POSTGRES_ENV, "PostgreSQL"))
    schema = f"kp_empty_{os.getpid()}_{secrets.token_hex(3)}"
    admin = Database(base)
    with admin.engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(f"{base}?options=-csearch_path%3D{schema}")
    try:
        yield database
    finally:
        database.dispose()
        with admin.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_upgrade_from_empty_creates_every_table(empty_database: Database) -> None:
    assert migrate.current_revision(empty_database.engine) is None
    migrate.upgrade(empty_database.engine)
    assert migrate.current_revision(empty_database.engine) == migrate.head_revision()
    assert set(inspect(empty_database.engine).get_table_names()) >= TABLES


def test_downgrade_to_base_and_up_again(empty_database: Database) -> None:
    migrate.upgrade(empty_database.engine)
    migrate.downgrade(empty_database.engine, "base")
    assert not TABLES & set(inspect(empty_database.engine).get_table_names())
    migrate.upgrade(empty_database.engine)
    assert migrate.current_revision(empty_database.engine) == migrate.head_revision()


def test_models_and_migrations_agree(empty_database: Database) -> None:
    migrate.upgrade(empty_database.engine)
    with empty_database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_upgrade_twice_is_harmless(empty_database: Database) -> None:
    migrate.upgrade(empty_database.engine)
    migrate.upgrade(empty_database.engine)
    assert migrate.current_revision(empty_database.engine) == migrate.head_revision()


@pytest.mark.postgres
def test_postgres_behind_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    base = normalize_database_url(require_service(POSTGRES_ENV, "PostgreSQL"))
    schema = f"kp_behind_{os.getpid()}_{secrets.token_hex(3)}"
    admin = Database(base)
    with admin.engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = f"{base}?options=-csearch_path%3D{schema}"
        with pytest.raises(SchemaBehind, match="keyplane db upgrade"):
            Services.open(Settings(data_dir=tmp_path, database_url=url))
        database = Database(url)
        migrate.upgrade(database.engine)
        database.dispose()
        Services.open(Settings(data_dir=tmp_path, database_url=url)).close()
    finally:
        with admin.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_sqlite_is_migrated_on_open(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'new' / 'k.db'}")
    services = Services.open(settings)
    try:
        assert migrate.current_revision(services.database.engine) == migrate.head_revision()
    finally:
        services.close()
