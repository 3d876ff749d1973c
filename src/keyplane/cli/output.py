"""How the CLI prints: Rich for people, ``--json`` for programs, errors on stderr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from keyplane.core.errors import KeyplaneError
from keyplane.storage.errors import StorageUnavailable

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=_default))


def fail(message: str, code: int = 1) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn Keyplane's own errors into one clear line and exit status 1."""
    try:
        yield
    except KeyplaneError as error:
        fail(escape(str(error)))
    except StorageUnavailable as error:
        # The driver's first line says what went wrong (refused, unknown host,
        # bad password) without the password itself.
        reason = error.reason
        hint = "Check KEYPLANE_DATABASE_URL and that the database is up."
        fail(escape(f"cannot use the database: {reason}. {hint}"))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
