"""The ``keyplane`` command."""

from __future__ import annotations

import typer

import keyplane
from keyplane.cli.account import login, logout, whoami
from keyplane.cli.admin import admin_app
from keyplane.cli.environment import env
from keyplane.cli.keys import audit, keys_app
from keyplane.cli.scan import scan
from keyplane.cli.server import db_app, serve

app = typer.Typer(
    name="keyplane",
    help="Keyplane: issue, verify, track and revoke API keys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a rich traceback would print local variables
)
app.command("serve")(serve)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
# The key holder's side, through the SDK.
app.command("login")(login)
app.command("logout")(logout)
app.command("whoami")(whoami)
app.add_typer(keys_app, name="keys")
app.command("audit")(audit)
app.command("env")(env)
app.command("scan")(scan)


@app.command("version")
def version() -> None:
    """Print Keyplane's version."""
    typer.echo(keyplane.__version__)


def main() -> None:
    app()
