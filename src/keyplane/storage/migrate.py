"""Alembic, driven from code: upgrade to head, and tell whether a database is current."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

from keyplane.core.errors import KeyplaneError
from keyplane.storage.errors import outages_translated

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SchemaBehind(KeyplaneError):
    """The database schema is older than this version of Keyplane expects."""


class SchemaAhead(KeyplaneError):
    """The database schema is newer than this version of Keyplane knows."""


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise KeyplaneError("no migrations found")
    return head


@outages_translated()
def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@outages_translated()
def upgrade(engine: Engine, revision: str = "head") -> None:
    ensure_known(engine)
    # On SQLite the write option makes the migration take the write lock first,
    # so two processes starting at once migrate one after the other.
    command.upgrade(alembic_config(engine.execution_options(keyplane_write=True)), revision)


@outages_translated()
def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


@outages_translated()
def prepare(engine: Engine) -> None:
    """Bring SQLite to head (zero configuration); require PostgreSQL to be migrated by hand."""
    ensure_known(engine)
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    else:
        ensure_current(engine)


def is_known(revision: str | None) -> bool:
    """True for an empty database or a revision this version of Keyplane ships."""
    if revision is None:
        return True
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


@outages_translated()
def ensure_known(engine: Engine) -> None:
    """Raise :class:`SchemaAhead` if a newer Keyplane has migrated this database."""
    current = current_revision(engine)
    if not is_known(current):
        raise SchemaAhead(
            f"the database schema is at {current}, which this Keyplane "
            f"({head_revision()} at most) does not know: a newer Keyplane migrated it. "
            "Run that newer version, or restore a backup taken before the upgrade"
        )


def ensure_current(engine: Engine) -> None:
    """Raise :class:`SchemaBehind`, saying what to run, unless the schema is at head."""
    ensure_known(engine)
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaBehind(
            f"the database schema is at {current or 'nothing (empty database)'} but this "
            f"Keyplane needs {head}: run `keyplane db upgrade` with the same "
            "KEYPLANE_DATABASE_URL, then start the server again"
        )
