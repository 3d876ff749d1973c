"""Operator commands that go straight to the database: ``bootstrap``, ``set-password``,
``reset-password``, ``mail``, ``create-key``, ``end-sessions``, ``scan-keys``.

A password is read from standard input (``--password-stdin``) or a hidden prompt
typed twice, never from an argument (arguments land in shell history and ``ps``).

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
from keyplane.core.paths import CONSOLE_PREFIX
from keyplane.service.accounts.organizations import MIN_PASSWORD_LENGTH
from keyplane.service.records import CreatedKey
from keyplane.service.services import Services
from keyplane.storage.urls import hide_password

admin_app = typer.Typer(help="Operator commands, straight to the database.", no_args_is_help=True)


@contextmanager
def _services() -> Iterator[Services]:
    with errors_as_messages():
        services = Services.open(Settings.from_env())
        try:
            yield services
        finally:
            services.close()


def _read_password(password_stdin: bool, *, who: str) -> str | None:
    """The password from standard input, or from a hidden prompt typed twice when a
    person is at a terminal; ``None`` when there is neither."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("--password-stdin was given but standard input held no password")
        return password
    if not sys.stdin.isatty():
        return None
    entered: str = typer.prompt(
        f"Console password for {who} (at least {MIN_PASSWORD_LENGTH} characters)",
        hide_input=True,
        confirmation_prompt="Repeat it",
    )
    return entered


def _set_password_hint(email: str) -> str:
    return (
        f"{email} has no console password yet, so cannot sign in. Set one with\n"
        f"  keyplane admin set-password {email}\n"
        "(it asks for it, hidden; or pipe it in with --password-stdin)."
    )


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
    """Create an organization, its owner and a first project, and print a management key once.

    The owner's console password is asked for (hidden, twice) at a terminal, or read
    with --password-stdin; an owner who already has one keeps it.
    """
    with _services() as services:
        database_url = services.settings.database_url
        console_url = services.settings.console_url
        has_password = services.accounts.has_password(email)
        password = None if has_password else _read_password(password_stdin, who=email)
        if has_password and password_stdin:
            fail(f"{email} already has a console password; leave out --password-stdin")
        result = services.bootstrap(
            organization_name=org, project_name=project, owner_email=email, owner_password=password
        )
    accounts = result.accounts
    can_sign_in = bool(has_password) or password is not None
    data = {
        "database": hide_password(database_url),
        "console": f"{console_url}{CONSOLE_PREFIX}/signin",
        "organization": {"id": accounts.organization.id, "name": accounts.organization.name},
        "owner": {
            "id": accounts.owner.id,
            "email": accounts.owner.email,
            "has_password": can_sign_in,
        },
        "project": {"id": accounts.project.id, "name": accounts.project.name},
        "key": _key_json(result.key),
    }
    if not can_sign_in:
        stderr.print(f"[yellow]{escape(_set_password_hint(accounts.owner.email))}[/]")
    if as_json:
        print_json(data)
        return
    organization = accounts.organization
    stdout.print(f"Database     {escape(hide_password(database_url))}")
    stdout.print(f"Organization [bold]{escape(organization.name)}[/] ({organization.id})")
    stdout.print(f"Owner        {accounts.owner.email} ({accounts.owner.id})")
    stdout.print(f"Project      [bold]{escape(accounts.project.name)}[/] ({accounts.project.id})")
    if can_sign_in:
        stdout.print(
            f"Console      {console_url}{CONSOLE_PREFIX}/signin (as {accounts.owner.email})"
        )
    _show_key(result.key)


@admin_app.command("set-password")
def set_password(
    email: str = typer.Argument(..., help="The user's e-mail address."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Set a user's console password (an owner bootstrapped without one, a forgotten one).

    Ends the user's console sessions. The password is asked for (hidden, twice) or
    read with --password-stdin; it is never an argument.
    """
    password = _read_password(password_stdin, who=email)
    if password is None:
        fail("no terminal to ask for the password: pipe it in with --password-stdin")
    with _services() as services:
        user = services.accounts.set_password(email, password)
    stdout.print(
        f"Console password set for {escape(user.email)} ({user.id}); their sessions were ended."
    )


@admin_app.command("reset-password")
def reset_password(email: str = typer.Argument(..., help="The user's e-mail address.")) -> None:
    """Print a one-time link that lets the user choose a new password (for a server
    without mail; the link works once, for 30 minutes, and ends their sessions when used).

    Hand the link to the person over a channel you trust: whoever holds it can set
    the password."""
    with _services() as services:
        link = services.email_links.reset_link(email)
    stdout.print(f"Reset link for {escape(email)} (works once, until {link.expires_at:%H:%M} UTC):")
    stdout.print(link.url, markup=False, soft_wrap=True)


@admin_app.command("mail")
def mail(
    limit: int = typer.Option(20, "--limit", min=1, max=500, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the mail outbox: what was sent, what waits, what failed and why."""
    with _services() as services:
        queued = services.outbox.queued(limit)
        enabled = services.outbox.enabled
    if as_json:
        print_json(
            [
                {
                    "id": item.id,
                    "to": item.recipient,
                    "template": item.template,
                    "created_at": item.created_at,
                    "attempts": item.attempts,
                    "status": item.status,
                    "last_error": item.last_error,
                    "subject": item.mail.subject if item.mail else None,
                }
                for item in queued
            ]
        )
        return
    if not enabled:
        stderr.print("[yellow]No mail server is set (KEYPLANE_SMTP_URL): nothing is sent.[/]")
    if not queued:
        stdout.print("The outbox is empty.")
    for item in queued:
        subject = f" {item.mail.subject!r}" if item.mail else ""
        error = f" ({item.last_error})" if item.last_error else ""
        stdout.print(
            f"{item.created_at:%Y-%m-%d %H:%M} {item.status:<8} {escape(item.recipient)} "
            f"{item.template}{escape(subject)} tries={item.attempts}{escape(error)}"
        )


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
        project_record = services.projects.find_project(caller, project)
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


@admin_app.command("scan-keys")
def scan_keys(
    now: str | None = typer.Option(
        None,
        "--now",
        help="Scan as if it were this time (ISO 8601 with a time zone, e.g. "
        "2027-03-01T00:00:00Z): to age keys for a test. Default: now.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run one key scan now: expiring and expired keys, the stale-key policies."""
    at: datetime | None = None
    if now is not None:
        try:
            at = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            fail(f"--now: {now!r} is not an ISO 8601 time")
        if at.tzinfo is None:
            fail("--now needs a time zone, e.g. 2027-03-01T00:00:00Z")
    with _services() as services:
        report = services.scheduler.run_once(at)
    if as_json:
        print_json({"at": report.at.isoformat(), "ran": report.ran, "counts": report.counts})
        return
    if not report.ran:
        stdout.print("Another instance is scanning right now; nothing done.")
        return
    done = ", ".join(f"{kind}: {count}" for kind, count in sorted(report.counts.items()))
    stdout.print(f"Scanned at {report.at.isoformat()}: {done or 'nothing to do'}.")


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
        "[yellow]This is the only time the key is shown. Store it now, without putting it "
        "in your shell history: read -rs KEYPLANE_API_KEY && export KEYPLANE_API_KEY "
        "(then paste it and press Enter).[/]"
    )
