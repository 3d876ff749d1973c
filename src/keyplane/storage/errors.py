"""The one storage error the layers above see for an outage: :class:`StorageUnavailable`.

Down, restarting, connections cut, the pool exhausted, SQLite locked past its
busy timeout, or the schema gone (the database dropped and recreated empty):
:class:`~keyplane.storage.database.Database` translates the driver's errors
into this one class, so nothing above ``storage/`` needs to know SQLAlchemy's
exception tree. The faces answer it with 503 and one log line, never a
traceback; other database errors stay what they are (bugs, 500s).

It is not a :class:`~keyplane.core.errors.KeyplaneError` on purpose: code that
turns Keyplane's errors into client answers (a 4xx) must never catch an outage
by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import exc

#: The driver errors that mean "the database cannot answer right now".
OUTAGES: Final[tuple[type[Exception], ...]] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    exc.DisconnectionError,
)


class StorageUnavailable(Exception):
    """The database cannot answer right now; retrying later may work.

    ``cause`` is the driver's error class (``OperationalError``), safe to log;
    ``reason`` is the first line of the driver's message (refused, unknown
    host, bad password: never the password or SQL), for an operator's
    terminal, not for logs or HTTP answers.
    """

    def __init__(self, cause: str, reason: str = "") -> None:
        super().__init__(f"the database is unavailable ({cause})")
        self.cause = cause
        self.reason = reason or cause


def unavailable(error: BaseException) -> StorageUnavailable:
    """The :class:`StorageUnavailable` for a driver error."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return StorageUnavailable(type(original).__name__, lines[0] if lines else "")


@contextmanager
def outages_translated(*, every_error: bool = False) -> Iterator[None]:
    """Raise :class:`StorageUnavailable` in place of an outage of the driver (any
    SQLAlchemy error with ``every_error``: a health probe), without the original
    chained: its message can quote SQL and parameters."""
    caught = exc.SQLAlchemyError if every_error else OUTAGES
    try:
        yield
    except caught as error:
        raise unavailable(error) from None
