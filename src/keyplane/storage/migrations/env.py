"""Alembic environment: runs on the engine handed over in ``config.attributes``.

On SQLite, a migration that changes a constraint rebuilds the table (Alembic's
batch mode: copy, drop the old table, rename). With foreign keys enforced,
dropping a parent table such as ``organizations`` would cascade and delete
every project and key below it, so foreign keys are off while migrations run
(as SQLite's documentation prescribes for table rebuilds) and checked in full
with ``PRAGMA foreign_key_check`` before the migration commits.
"""

from __future__ import annotations

from alembic import context

from keyplane.storage.models import Base

engine = context.config.attributes["engine"]


class ForeignKeysBroken(RuntimeError):
    """A migration left rows whose parent is missing; nothing was committed."""


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # On the driver's connection, before the transaction begins: inside one
        # SQLite ignores the pragma.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise ForeignKeysBroken(f"rows without their parent row: {broken[:5]}")
        connection.commit()
    finally:
        if sqlite:
            connection.rollback()
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
