"""``keyplane keys ...`` and ``keyplane audit``: the management API through the SDK."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice

import typer
from rich.markup import escape
from rich.table import Table

from keyplane.cli.client_support import JSON_OPTION, URL_OPTION, client, sdk_errors, when
from keyplane.cli.output import fail, print_json, stderr, stdout
from keyplane.client import Client, CreatedKey, Key
from keyplane.core.durations import parse_duration

keys_app = typer.Typer(
    help="Your organization's keys, through the API (needs keys:read / keys:write).",
    no_args_is_help=True,
)

PROJECT_OPTION = typer.Option(
    None, "--project", help="Project id or name (default: the project of the key you use)."
)


def _project(api: Client, project: str | None) -> str:
    """A project id: the one given, the one named (needs projects:read), or the key's own."""
    if not project:
        return api.whoami().project_id
    if project.startswith("prj_"):
        return project
    for candidate in api.projects.iter():
        if candidate.name == project:
            return candidate.id
    fail(f"no project named {escape(repr(project))} in your organization")


@keys_app.command("list")
def list_keys(
    project: str | None = PROJECT_OPTION,
    status: str = typer.Option(
        "all", "--status", help="all, active, disabled, revoked or expired."
    ),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many keys."),
    every: bool = typer.Option(False, "--all", help="Every key, however many."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List a project's keys, newest first (never their values)."""
    with client(url) as api:
        project_id = _project(api, project)
        found = api.keys.iter(project_id, status=status, page_size=min(limit, 200))
        keys = list(found if every else islice(found, limit))
    if as_json:
        print_json([key.to_json() for key in keys])
        return
    table = Table(title=f"Keys of {project_id}", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=20)
    table.add_column("name")
    table.add_column("hint", no_wrap=True, min_width=10)
    for column in ("status", "scopes", "expires", "last used"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.id,
            escape(key.name),
            key.hint,
            key.status,
            escape(", ".join(key.scopes) or "-"),
            when(key.expires_at),
            when(key.last_used_at),
        )
    stdout.print(table)
    if not keys:
        stderr.print("No keys.")


@keys_app.command("show")
def show_key(
    key_id: str = typer.Argument(..., help="The key's id (key_...)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one key's record."""
    with client(url) as api:
        key = api.keys.get(key_id)
    if as_json:
        print_json(key.to_json())
        return
    _show(key)


@keys_app.command("create")
def create_key(
    name: str = typer.Option(..., "--name", help="What the key is for."),
    scope: list[str] = typer.Option([], "--scope", help="A scope to grant; repeat for more."),
    expires_in: str | None = typer.Option(None, "--expires-in", help="e.g. 30d, 12h."),
    ip: list[str] = typer.Option([], "--ip", help="A CIDR the key may be used from; repeat."),
    canary: bool = typer.Option(
        False, "--canary", help="A canary: always refused; any use raises an alert."
    ),
    project: str | None = PROJECT_OPTION,
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a key and print its value once."""
    with client(url) as api:
        if expires_in is not None:
            parse_duration(expires_in)  # a typo is refused here, with the rule in the message
        created = api.keys.create(
            _project(api, project),
            name=name,
            scopes=scope,
            expires_in=expires_in,
            ip_allowlist=ip,
            canary=canary,
        )
    _show_created(created, as_json)


@keys_app.command("revoke")
def revoke_key(
    key_id: str = typer.Argument(..., help="The key's id (key_...)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a key for good."""
    with client(url) as api:
        key = api.keys.get(key_id)
        if not yes and key.status != "revoked":
            recent = api.keys.callers(key_id, days=7)
            stderr.print(_callers_phrase(len(recent.ips)))
            typer.confirm(
                f"Revoke {key.id} ({key.name}, {key.hint})? This cannot be undone", abort=True
            )
        key = api.keys.revoke(key_id)
    if as_json:
        print_json(key.to_json())
        return
    stdout.print(f"Revoked {key.id} ([bold]{escape(key.name)}[/], {key.hint}).")


@keys_app.command("callers")
def key_callers(
    key_id: str = typer.Argument(..., help="The key's id (key_...)."),
    days: int = typer.Option(30, "--days", min=1, max=30, help="Look back this many days."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Who still uses a key: its client IPs and user agents, with counts and last seen."""
    with client(url) as api:
        found = api.keys.callers(key_id, days=days)
    if as_json:
        print_json(found.to_json())
        return
    stdout.print(_callers_phrase(len(found.ips), days))
    for title, callers in (("Client IP", found.ips), ("User agent", found.user_agents)):
        if not callers:
            continue
        table = Table(title=None, show_edge=False)
        table.add_column(title, overflow="fold")
        table.add_column("Uses", justify="right")
        table.add_column("Last seen")
        for caller in callers:
            table.add_row(
                escape(caller.value or "(none sent)"), str(caller.count), when(caller.last_seen_at)
            )
        stdout.print(table)


def _callers_phrase(count: int, days: int = 7) -> str:
    if not count:
        return f"No program used this key in the last {days} days."
    callers = "1 client address" if count == 1 else f"{count} client addresses"
    return f"{callers} used this key in the last {days} days."


@keys_app.command("roll")
def roll_key(
    key_id: str = typer.Argument(..., help="The key's id (key_...)."),
    grace: str = typer.Option(
        "24h", "--grace", help="How long the old key keeps working (0s ends it now)."
    ),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Replace a key with a new one, printed once; the old one works for the grace period."""
    with sdk_errors():
        grace_period = parse_duration(grace)
    with client(url) as api:
        created = api.keys.roll(key_id, grace_period=grace_period)
    _show_created(created, as_json)


def audit(
    key_id: str | None = typer.Option(None, "--key", help="Events about this key id."),
    action: str | None = typer.Option(None, "--action", help="e.g. key.created, key.revoked."),
    actor: str | None = typer.Option(None, "--actor", help="e.g. key:key_..., operator."),
    since: datetime | None = typer.Option(None, "--since", help="At or after this time (UTC)."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many events."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """The organization's audit log, newest first (needs audit:read)."""
    with client(url) as api:
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        found = api.audit.iter(
            key_id=key_id, action=action, actor=actor, since=since, page_size=min(limit, 200)
        )
        events = list(islice(found, limit))
    if as_json:
        print_json([event.to_json() for event in events])
        return
    table = Table(title="Audit log", title_justify="left")
    table.add_column("time")
    table.add_column("actor")
    table.add_column("action", no_wrap=True)
    table.add_column("target", no_wrap=True, min_width=20)
    for column in ("client ip", "details"):
        table.add_column(column)
    for event in events:
        details = ", ".join(f"{name}={value}" for name, value in event.details.items())
        table.add_row(
            when(event.occurred_at),
            escape(event.actor),
            event.action,
            event.target_id,
            event.client_ip or "-",
            escape(details),
        )
    stdout.print(table)


def _show(key: Key) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("Key", f"[bold]{escape(key.name)}[/] ({key.id}, {key.hint})")
    table.add_row("Status", key.status)
    table.add_row("Project", key.project_id)
    table.add_row("Scopes", escape(", ".join(key.scopes) or "none"))
    table.add_row("IP allowlist", ", ".join(key.ip_allowlist) or "any")
    table.add_row("Created", f"{when(key.created_at)} by {escape(key.created_by)}")
    table.add_row("Expires", when(key.expires_at) if key.expires_at else "never")
    if key.revoked_at:
        table.add_row("Revoked", when(key.revoked_at))
    if key.rolled_from_id:
        table.add_row("Rolled from", key.rolled_from_id)
    last = "never"
    if key.last_used_at:
        last = f"{when(key.last_used_at)} from {key.last_used_ip or 'unknown IP'}"
        if key.last_used_user_agent:
            last += f" ({escape(key.last_used_user_agent)})"
    table.add_row("Last used", last)
    stdout.print(table)


def _show_created(created: CreatedKey, as_json: bool) -> None:
    if as_json:
        print_json(created.to_json())
        return
    _show(created)
    stdout.print()
    stdout.print(created.key.reveal(), markup=False)
    stdout.print()
    stderr.print(
        "[yellow]This is the only time the key is shown. Store it now, e.g. with "
        "`keyplane env` or in a secret manager.[/]"
    )
