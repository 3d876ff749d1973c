"""What the faces do when the database cannot answer right now.

``storage/`` raises one error for an outage,
:class:`~keyplane.storage.errors.StorageUnavailable`; the faces answer it with
503 (API: a problem with ``Retry-After``; console: an error page) and log one
line without a traceback, so an outage is neither a burst of 500s nor a flood
of tracebacks. Other database errors stay 500s. A schema that is gone (the
database dropped and recreated empty, or never migrated) counts as
unavailable too, and readiness says so.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
from typing import Final

from keyplane.storage import migrate
from keyplane.storage.database import Database
from keyplane.storage.errors import StorageUnavailable

#: What the faces' exception handlers register for a 503 (storage translates
#: every outage of the driver into this one class).
DATABASE_UNAVAILABLE_ERRORS: Final[tuple[type[Exception], ...]] = (StorageUnavailable,)


logger = logging.getLogger("keyplane.availability")


def log_database_unavailable(method: str, path: str, error: BaseException) -> None:
    """The one log line of a request that met an outage, on every surface: no traceback
    (an outage would otherwise flood the log), and only the driver's error class,
    never its message (it may quote SQL)."""
    logger.warning("database unavailable during %s %s: %s", method, path, cause_name(error))


def cause_name(error: BaseException) -> str:
    """The driver's error class name (``OperationalError``), never its message or SQL."""
    if isinstance(error, StorageUnavailable):
        return error.cause
    return type(getattr(error, "orig", None) or error).__name__


def is_database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot serve right now (a 503, not a 500).

    A schema that is gone (PostgreSQL's undefined table) arrives here as an
    outage already: ``storage/database.py`` translates it.
    """
    return isinstance(error, DATABASE_UNAVAILABLE_ERRORS)


#: Seconds a positive readiness answer is reused: a load balancer polling
#: ``/readyz`` often costs one query per process per interval, not per poll.
READY_CACHE_SECONDS: Final = 1.0
_ready_until: weakref.WeakKeyDictionary[Database, float] = weakref.WeakKeyDictionary()


def readiness_problem(database: Database) -> str | None:
    """None when the database answers and its schema is at this Keyplane's Alembic
    head; else why not (no secrets, no SQL). Never called on a request's path."""
    now = time.monotonic()
    if _ready_until.get(database, 0.0) > now:
        return None
    try:
        current = database.schema_revision()
    except StorageUnavailable:
        return "The database is unreachable."
    head = _head_revision()
    if current != head:
        return f"The database schema is at {current or 'nothing'}, not {head}: migrate it."
    _ready_until[database] = now + READY_CACHE_SECONDS
    return None


@functools.cache
def _head_revision() -> str:
    return migrate.head_revision()
