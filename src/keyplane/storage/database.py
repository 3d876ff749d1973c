"""Engines and transactions for SQLite and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` (a key the API said it
created survives a power cut), foreign keys on and a busy timeout, so the
admin CLI can write while a server runs on the same file. Transactions that
write start with ``BEGIN IMMEDIATE``: they take the write lock up front and
wait for it, instead of failing when another process commits between their
read and their write.

A write that breaks a unique or foreign-key constraint (the database's last
word when two requests race past the same check) is translated here, once,
into :class:`WriteConflict`, a :class:`~keyplane.core.errors.StateConflict`: the
faces answer it with 409, never a 500, and the transaction is rolled back.

Code that changes something others cache registers what to tell them with
:func:`after_commit` inside the transaction; :meth:`Database.write` runs those
callbacks once the commit has succeeded, and never when it rolls back. A
failing callback is logged, never raised: the change is committed, and the
caller's answer must say so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from keyplane.core.errors import KeyplaneError, StateConflict
from keyplane.storage.errors import outages_translated
from keyplane.storage.urls import hide_password

SQLITE_BUSY_TIMEOUT_MS = 15_000
#: PostgreSQL SQLSTATEs meaning the schema is gone (the database dropped and
#: recreated empty, or never migrated): undefined_table, invalid_catalog_name.
_SCHEMA_GONE = frozenset({"42P01", "3D000"})
_WRITE = "keyplane_write"
#: ``Session.info`` key of the callbacks :meth:`Database.write` runs after its commit.
_AFTER_COMMIT = "keyplane_after_commit"
_WRITE_SESSION = "keyplane_write_session"

logger = logging.getLogger(__name__)
WRITE_CONFLICT_MESSAGE = (
    "this change conflicts with another change made at the same time; reload and try again"
)


class DatabaseUnavailable(KeyplaneError):
    """The database cannot be opened; the message says which setting to check."""


class WriteConflict(StateConflict):
    """A write broke a constraint: another change got there first. Nothing was committed.

    Raised by :meth:`Database.write` in place of SQLAlchemy's ``IntegrityError``
    (a unique, foreign-key, not-null or check violation), without its SQL or
    parameters. Services that know which constraint a race can hit catch it to
    say so in their own words.
    """

    def __init__(self, message: str = WRITE_CONFLICT_MESSAGE) -> None:
        super().__init__(message)


class Database:
    """One database: an engine, read and write transactions, a health check."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            _prepare_sqlite_file(url)
        elif url.startswith("postgresql+psycopg"):
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise DatabaseUnavailable(
                    "KEYPLANE_DATABASE_URL points at PostgreSQL but psycopg is not installed: "
                    "pip install 'keyplane[postgres]'"
                ) from None
            engine_options.setdefault("pool_pre_ping", True)
            # A database that is down must fail fast (503), not hold a worker.
            engine_options.setdefault("pool_timeout", 10)
            connect_args = dict(engine_options.get("connect_args", {}))
            connect_args.setdefault("connect_timeout", 5)
            engine_options["connect_args"] = connect_args
        # Parameters stay out of error messages and tracebacks: they can hold
        # hashes, emails or metadata.
        engine_options.setdefault("hide_parameters", True)
        self.engine: Engine = create_engine(url, **engine_options)
        event.listen(self.engine, "handle_error", _schema_gone_is_unavailable)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self.engine.execution_options(**{_WRITE: True}),
            expire_on_commit=False,
            info={_WRITE_SESSION: True},
        )
        # Single-statement reads on the hot path (the verifier's look-up by hash): on
        # PostgreSQL a pool of autocommit connections without pre-ping, so a look-up
        # is one round trip instead of four (ping, BEGIN, SELECT, COMMIT).
        self._lookup_engine: Engine | None = None
        if not self.is_sqlite:
            self._lookup_engine = create_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_pre_ping=False,
                hide_parameters=True,
                pool_size=engine_options.get("pool_size", 5),
                max_overflow=engine_options.get("max_overflow", 10),
            )
            event.listen(self._lookup_engine, "handle_error", _schema_gone_is_unavailable)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work. An outage raises :class:`StorageUnavailable`."""
        with outages_translated(), self._reader() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error.

        A constraint violation (at a flush or at the commit) rolls back and
        raises :class:`WriteConflict`; an outage raises :class:`StorageUnavailable`.
        After the commit it runs, in order, the callbacks registered with
        :func:`after_commit`.
        """
        try:
            with outages_translated(), self._writer() as session, session.begin():
                yield session
        except IntegrityError:
            raise WriteConflict() from None
        for callback in session.info.pop(_AFTER_COMMIT, ()):
            try:
                callback()
            except Exception:  # committed already: the answer must not become a 500
                logger.exception("an after-commit callback failed")

    def lookup(self, statement: Any, parameters: dict[str, Any]) -> Any:
        """Run one read-only statement; the first row, or None.

        On PostgreSQL this is one round trip on an autocommit connection. A
        connection the server dropped (restart, failover) fails once without a
        pre-ping; the look-up is then retried once on a fresh connection.
        """
        if self._lookup_engine is None:
            with self.read() as session:
                return session.connection().execute(statement, parameters).one_or_none()
        with outages_translated():
            for attempt in (1, 2):
                try:
                    with self._lookup_engine.connect() as connection:
                        return connection.execute(statement, parameters).one_or_none()
                except DBAPIError as error:
                    if attempt == 2 or not error.connection_invalidated:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def ping(self) -> None:
        """Raise :class:`StorageUnavailable` if the database cannot answer a trivial query."""
        with outages_translated(every_error=True), self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def schema_revision(self) -> str | None:
        """The Alembic revision the schema is at; None for an empty database (one query).

        Any failure to read it raises :class:`StorageUnavailable` (a health probe).
        """
        with outages_translated(every_error=True), self.engine.connect() as connection:
            if not self.engine.dialect.has_table(connection, "alembic_version"):
                return None
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
            return str(row[0]) if row is not None else None

    def dispose(self) -> None:
        self.engine.dispose()
        if self._lookup_engine is not None:
            self._lookup_engine.dispose()

    def __repr__(self) -> str:
        return f"Database({hide_password(self.url)!r})"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the write transaction of ``session`` has committed.

    Nothing runs if the transaction rolls back. This is how a change announces
    itself (the key caches and the change feed): the code that makes the change
    registers the news in the same place, so no caller can forget to send it.
    """
    if not session.info.get(_WRITE_SESSION):
        raise RuntimeError("after_commit needs a session of Database.write()")
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def _schema_gone_is_unavailable(context: ExceptionContext) -> BaseException | None:
    """A missing table is an outage, as SQLite already says ("no such table" is an
    ``OperationalError``): PostgreSQL's ``ProgrammingError`` for it becomes an
    ``OperationalError`` here, so every face answers 503 and logs one line."""
    original = context.original_exception
    if getattr(original, "sqlstate", None) not in _SCHEMA_GONE:
        return None
    if isinstance(context.sqlalchemy_exception, OperationalError):
        return None
    error = OperationalError(context.statement, context.parameters, original, hide_parameters=True)
    return error


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Created here, not by SQLite, so that only the owner can read it.
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
    except OSError as error:
        raise DatabaseUnavailable(
            f"cannot create the SQLite database at {path} ({error.strerror}): "
            "set KEYPLANE_DATA_DIR or KEYPLANE_DATABASE_URL to a writable place"
        ) from None


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, start transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
