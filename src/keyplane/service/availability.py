"""Which storage errors mean "the database cannot answer right now".

The faces answer these with 503 (API: a problem with ``Retry-After``; console:
an error page) and log one line without a traceback, so an outage is neither
a burst of 500s nor a flood of tracebacks. Other database errors stay 500s.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import exc as database_errors

#: Down, restarting, connections cut, pool exhausted, SQLite locked past its busy timeout.
DATABASE_UNAVAILABLE_ERRORS: Final[tuple[type[Exception], ...]] = (
    database_errors.OperationalError,
    database_errors.InterfaceError,
    database_errors.TimeoutError,
    database_errors.DisconnectionError,
)


def cause_name(error: BaseException) -> str:
    """The driver's error class name (``OperationalError``), never its message or SQL."""
    return type(getattr(error, "orig", None) or error).__name__
