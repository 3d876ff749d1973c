from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

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


@contextmanager
def at_0005_with_a_project(database: Database, now: str) -> Iterator[Connection]:
    """The schema at 0005 holding one organization ``org_1`` and its project ``prj_1``; the
    caller adds rows in the same transaction."""
    migrate.upgrade(database.engine, "0005")
    with database.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO organizations (id, name, created_at) VALUES ('org_1', 'A', :now)"),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO projects (id, organization_id, name, created_at, created_by) "
                "VALUES ('prj_1', 'org_1', 'P', :now, 'operator')"
            ),
            {"now": now},
        )
        yield connection


def test_0008_keeps_one_successor_of_a_key_rolled_twice_and_refuses_a_second(
    empty_database: Database,
) -> None:
    """A database forked by the old roll race (two successors of one key) upgrades: the
    oldest successor keeps its link, and from then on the schema refuses a second one."""
    now = "2026-12-01 00:00:00+00:00"
    with at_0005_with_a_project(empty_database, now) as connection:
        for number, rolled_from in ((1, None), (2, "key_1"), (3, "key_1"), (4, "key_2")):
            connection.execute(
                text(
                    "INSERT INTO api_keys (id, organization_id, project_id, name, key_hash, "
                    "hint, scopes, ip_allowlist, metadata, enabled, created_at, created_by, "
                    "updated_at, rolled_from_id, quota_used, quota_period) VALUES "
                    "(:id, 'org_1', 'prj_1', 'k', :hash, 'kp_...', '[]', '[]', '{}', true, "
                    ":now, 'operator', :now, :rolled_from, 0, '')"
                ),
                {
                    "id": f"key_{number}",
                    "hash": f"{number:064d}",
                    "now": now,
                    "rolled_from": rolled_from,
                },
            )
    migrate.upgrade(empty_database.engine)
    with empty_database.engine.begin() as connection:
        links = dict(connection.execute(text("SELECT id, rolled_from_id FROM api_keys")).all())
    assert links == {"key_1": None, "key_2": "key_1", "key_3": None, "key_4": "key_2"}
    with pytest.raises(IntegrityError), empty_database.engine.begin() as connection:
        connection.execute(text("UPDATE api_keys SET rolled_from_id = 'key_1' WHERE id = 'key_3'"))
    migrate.downgrade(empty_database.engine, "0005")
    migrate.upgrade(empty_database.engine)


def test_upgrading_a_populated_database_keeps_every_row(empty_database: Database) -> None:
    """A migration that rebuilds a parent table on SQLite (0007 drops the unique name of
    ``organizations``) must not cascade into its children: with foreign keys on during
    the rebuild, every project and key of the organization was deleted."""
    now = "2026-12-01 00:00:00+00:00"
    with at_0005_with_a_project(empty_database, now) as connection:
        connection.execute(
            text(
                "INSERT INTO api_keys (id, organization_id, project_id, name, key_hash, "
                "hint, scopes, ip_allowlist, metadata, enabled, created_at, created_by, "
                "updated_at, quota_used, quota_period) VALUES "
                "('key_1', 'org_1', 'prj_1', 'k', :hash, 'kp_...', '[]', '[]', '{}', true, "
                ":now, 'operator', :now, 0, '')"
            ),
            {"hash": "1" * 64, "now": now},
        )

    def counts() -> dict[str, int]:
        with empty_database.engine.connect() as connection:
            return {
                table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608 - fixed names
                for table in ("organizations", "projects", "api_keys")
            }

    before = counts()
    migrate.upgrade(empty_database.engine)
    assert counts() == before == {"organizations": 1, "projects": 1, "api_keys": 1}
