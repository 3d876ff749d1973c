"""``keyplane login``, ``logout`` and ``whoami``: which key this machine uses."""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape
from rich.table import Table

from keyplane.cli.client_support import JSON_OPTION, URL_OPTION, client, sdk_errors, when
from keyplane.cli.output import fail, print_json, stderr, stdout
from keyplane.client import Client, InvalidAPIKey
from keyplane.client.keystore import KeyStore, backend_name, passed_over
from keyplane.client.resolution import resolve_url
from keyplane.client.shells import KEY_VARIABLE


def login(
    url: str | None = URL_OPTION,
    with_key_stdin: bool = typer.Option(
        False, "--with-key-stdin", help="Read the key from standard input instead of a prompt."
    ),
) -> None:
    """Check a key with the server, then keep it in the system key store for later commands."""
    with sdk_errors():
        base_url = resolve_url(url)
    if with_key_stdin:
        value = sys.stdin.readline().strip()
        if not value:
            fail("--with-key-stdin was given but standard input held no key")
    else:
        value = typer.prompt(f"API key for {base_url}", hide_input=True).strip()
        if not value:
            fail("no key was entered")
    with sdk_errors(), Client(value, base_url=base_url) as checking:
        try:
            identity = checking.whoami()
        except InvalidAPIKey as error:
            fail(
                escape(
                    f"{base_url} refused this key ({checking.key_hint}): "
                    f"{error.detail or error.code}. Nothing was stored."
                )
            )
    store = KeyStore()
    backend = backend_name()
    if backend is None:
        skipped = passed_over()
        reason = (
            f"keyring offers only {', '.join(skipped)}, which is no key store (it keeps "
            "secrets in a plain file or not at all)"
            if skipped
            else "keyring has no usable backend"
        )
        stderr.print(
            f"[yellow]No system key store is available ({escape(reason)}), so the key goes to "
            "a file readable only by you.[/]"
        )
    where = store.save(base_url, value)
    if backend is not None and where == str(store.credentials_path):
        stderr.print(
            f"[yellow]The system key store ({escape(backend)}) refused the key, so it goes to "
            "a file readable only by you.[/]"
        )
    store.set_default_url(base_url)
    stdout.print(
        f"Logged in to {escape(base_url)} as [bold]{escape(identity.name)}[/] "
        f"({identity.id}, {identity.hint}), project {identity.project_id}."
    )
    stdout.print(f"The key is stored in {escape(where)}.")
    if os.environ.get(KEY_VARIABLE, "").strip():
        stderr.print(
            f"[yellow]Note: {KEY_VARIABLE} is set in this shell and takes precedence over the "
            "stored key.[/]"
        )


def logout(url: str | None = URL_OPTION) -> None:
    """Forget the stored key for the server (the key itself stays valid: revoke it to end it)."""
    with sdk_errors():
        base_url = resolve_url(url)
    store = KeyStore()
    removed = store.delete(base_url)
    if store.default_url() == base_url:
        store.set_default_url(None)
    if not removed:
        stdout.print(f"No key was stored for {escape(base_url)}.")
        return
    stdout.print(f"Removed the key for {escape(base_url)} from {escape(' and '.join(removed))}.")


def whoami(url: str | None = URL_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Show the key this machine uses: name, id, project, scopes, and where it was found."""
    with client(url) as api:
        identity = api.whoami()
    if as_json:
        print_json({**identity.to_json(), "url": api.base_url, "source": api.key_source})
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("Key", f"[bold]{escape(identity.name)}[/] ({identity.id}, {identity.hint})")
    table.add_row("Project", identity.project_id)
    table.add_row("Organization", identity.organization_id)
    table.add_row("Scopes", escape(", ".join(identity.scopes) or "none"))
    table.add_row("Expires", when(identity.expires_at) if identity.expires_at else "never")
    table.add_row("Server", escape(api.base_url))
    table.add_row("Key from", escape(api.key_source))
    stdout.print(table)
