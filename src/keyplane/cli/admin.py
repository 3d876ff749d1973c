"""Operator commands that go straight to the database: ``bootstrap``, ``create-key``,
``end-sessions``.

They work while a server runs on the same data directory: SQLite is in WAL
mode and writes wait for the lock instead of failing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import typer
from rich.markup import escape

from keyplane.cli.output import errors_as_messages, fail, print_json, stderr, stdout
from keyplane.config import Settings
from keyplane.core.durations import parse_duration
from keyplane.service.records import CreatedKey
from keyplane.service.services import Services

admin_app = typer.Typer(help="Operator commands, straight to the database.", no_args_is_help=True)


@contextmanager
def _services() -> Iterator[Services]:
    with errors_as_messages():
        services = Services.open(Settings.from_env())
        try:
            yield services
        finally:
            services.close()


@admin_app.command("bootstrap")
def bootstrap(
    org: str = typer.Option(..., "--org", help="Name of the new organization."),
    project: str = typer.Option(..., "--project", help="Name of its first project."),
    email: str = typer.Option(..., "--email", help="Email of the owner."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the owner's console password from standard input."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create an organization, its owner and a first project, and print a management key once."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("--password-stdin was given but standard input held no password")
    with _services() as services:
        result = services.bootstrap(
            organization_name=org, project_name=project, owner_email=email, owner_password=password
        )
    accounts = result.accounts
    data = {
        "organization": {"id": accounts.organization.id, "name": accounts.organization.name},
        "owner": {"id": accounts.owner.id, "email": accounts.owner.email},
        "project": {"id": accounts.project.id, "name": accounts.project.name},
        "key": _key_json(result.key),
    }
    if as_json:
        print_json(data)
        return
    organization = accounts.organization
    stdout.print(f"Organization [bold]{escape(organization.name)}[/] ({organization.id})")
    stdout.print(f"Owner        {accounts.owner.email} ({accounts.owner.id})")
    stdout.print(f"Project      [bold]{escape(accounts.project.name)}[/] ({accounts.project.id})")
    _show_key(result.key)


@admin_app.command("create-key")
def create_key(
    org: str = typer.Option(..., "--org", help="Organization name or id."),
    project: str = typer.Option(..., "--project", help="Project name or id."),
    name: str = typer.Option(..., "--name", help="A name that says what the key is for."),
    scope: list[str] = typer.Option([], "--scope", help="A scope to grant; repeat for more."),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="e.g. 30d, 12h; default never."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a key in a project and print it once."""
    with _services() as services:
        expires_at: datetime | None = None
        if expires_in is not None:
            expires_at = services.clock() + parse_duration(expires_in)
        caller = services.accounts.operator_caller(org)
        project_record = services.accounts.find_project(caller, project)
        created = services.keys.create(
            caller, project_record.id, name=name, scopes=scope, expires_at=expires_at
        )
    if as_json:
        print_json(_key_json(created))
        return
    _show_key(created)


@admin_app.command("end-sessions")
def end_sessions(
    org: str | None = typer.Option(
        None, "--org", help="Only this organization (name or id); default every one."
    ),
) -> None:
    """Sign everyone out of the console (after a suspected session theft, say)."""
    with _services() as services:
        organization_id = services.accounts.operator_caller(org).organization_id if org else None
        ended = services.sessions.end_all(organization_id)
    stdout.print(f"Ended {ended} console session{'s' if ended != 1 else ''}.")


def _key_json(created: CreatedKey) -> dict[str, Any]:
    record = created.record
    return {
        "id": record.id,
        "key": created.secret.reveal(),
        "name": record.name,
        "hint": record.hint,
        "project_id": record.project_id,
        "organization_id": record.organization_id,
        "scopes": list(record.scopes),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
    }


def _show_key(created: CreatedKey) -> None:
    record = created.record
    scopes = ", ".join(record.scopes) or "none"
    stdout.print(f"Key          [bold]{escape(record.name)}[/] ({record.id}), scopes: {scopes}")
    if record.expires_at is not None:
        stdout.print(f"Expires      {record.expires_at.isoformat()}")
    stdout.print()
    stdout.print(created.secret.reveal(), markup=False)
    stdout.print()
    stderr.print(
        "[yellow]This is the only time the key is shown. Store it now, e.g. "
        "export KEYPLANE_API_KEY=<key>[/]"
    )
