"""``keyplane env``: the lines that make KEYPLANE_API_KEY permanent in your shell."""

from __future__ import annotations

import typer

from keyplane.cli.client_support import URL_OPTION, sdk_errors
from keyplane.cli.output import fail, stderr
from keyplane.client.resolution import DEFAULT_URL, resolve_key, resolve_url
from keyplane.client.shells import PLACEHOLDER, SHELLS, detect_shell, setup_for


def env(
    shell: str | None = typer.Option(
        None, "--shell", help=f"One of {', '.join(SHELLS)} (default: the shell you use)."
    ),
    show: bool = typer.Option(
        False, "--show", help="Put the key you use now in the lines (otherwise a placeholder)."
    ),
    url: str | None = URL_OPTION,
) -> None:
    """Print what to add to your shell's start-up file (or run) to set KEYPLANE_API_KEY for good."""
    chosen = (shell or detect_shell()).lower()
    if chosen not in SHELLS:
        fail(f"unknown shell {chosen!r}: use one of {', '.join(SHELLS)}")
    with sdk_errors():
        base_url = resolve_url(url)
        key = resolve_key(None, base_url).secret.reveal() if show else None
    setup = setup_for(
        chosen, **({"key": key} if key else {}), url=(base_url if base_url != DEFAULT_URL else None)
    )
    typer.echo(setup.render())
    if not show and PLACEHOLDER in setup.render():
        stderr.print(
            "Replace <your key> with your key, or run with --show to fill in the key you use now."
        )
