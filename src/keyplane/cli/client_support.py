"""What the key holders' commands share: one SDK client per command, errors as one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import typer
from rich.markup import escape

from keyplane.cli.output import errors_as_messages, fail
from keyplane.client import Client

URL_OPTION = typer.Option(
    None, "--url", help="The Keyplane server (default: KEYPLANE_URL, your last login, or local)."
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


@contextmanager
def sdk_errors() -> Iterator[None]:
    """SDK errors (and bad arguments the SDK refuses) as `error: ...` and exit status 1."""
    with errors_as_messages():
        try:
            yield
        except ValueError as error:
            fail(escape(str(error)))


@contextmanager
def client(url: str | None) -> Iterator[Client]:
    with sdk_errors():
        opened = Client(base_url=url)
        try:
            yield opened
        finally:
            opened.close()


def when(value: datetime | None) -> str:
    """A time for a table: UTC, to the second."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S")
