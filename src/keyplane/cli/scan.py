"""``keyplane scan``: find leaked Keyplane keys in files and git work trees."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from keyplane.cli.client_support import URL_OPTION, client
from keyplane.cli.output import print_json, stderr, stdout
from keyplane.client import Client
from keyplane.client.scan import DEFAULT_MAX_BYTES, Scanner, ScanReport
from keyplane.core.errors import KeyplaneError
from keyplane.core.keys import SecretKey


def scan(
    paths: list[Path] | None = typer.Argument(
        None, help="Files or directories (default: .); in a git work tree, the files git tracks."
    ),
    prefix: list[str] = typer.Option(
        [], "--prefix", help="Key prefix to look for; repeat (default: KEYPLANE_KEY_PREFIX or kp)."
    ),
    max_bytes: int = typer.Option(
        DEFAULT_MAX_BYTES, "--max-bytes", min=1, help="Skip files larger than this."
    ),
    no_git: bool = typer.Option(
        False, "--no-git", help="Read every file of a directory, even in a git work tree."
    ),
    revoke: bool = typer.Option(
        False,
        "--revoke",
        help="Revoke every key found, with your management key (keys:verify, keys:write).",
    ),
    url: str | None = URL_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Report every checksum-valid Keyplane key in PATHS as file:line (masked); exit 1 if any."""
    try:
        scanner = Scanner(prefix, max_bytes=max_bytes, use_git=not no_git)
    except KeyplaneError as error:
        stderr.print(f"[bold red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    report = scanner.scan(paths or [Path(".")])
    revoked: list[dict[str, str | None]] = []
    if revoke and report.findings:
        with client(url) as api:
            own = api.whoami().id
            keys = report.unique_keys()
            # The key doing the revoking goes last, if it leaked too.
            keys.sort(key=lambda key: key.hint == api.key_hint)
            revoked = [_revoke(api, key, own) for key in keys]
    if as_json:
        print_json(
            {
                "findings": [
                    {"path": f.path, "line": f.line, "column": f.column, "hint": f.hint}
                    for f in report.findings
                ],
                "files_scanned": report.files_scanned,
                "revoked": revoked,
            }
        )
    else:
        _print(report, revoked)
    if report.findings:
        raise typer.Exit(1)


def _revoke(api: Client, key: SecretKey, own_id: str) -> dict[str, str | None]:
    """Find the key's id with verify (management key only), then revoke it."""
    answer = api.verify(key)
    if answer.key_id is None:
        return {"hint": key.hint, "key_id": None, "result": "not a key of your organization"}
    if answer.code == "REVOKED":
        return {"hint": key.hint, "key_id": answer.key_id, "result": "already revoked"}
    api.keys.revoke(answer.key_id)
    note = (
        " (it is the key this command used: log in with a new one)"
        if answer.key_id == own_id
        else ""
    )
    return {"hint": key.hint, "key_id": answer.key_id, "result": "revoked" + note}


def _print(report: ScanReport, revoked: list[dict[str, str | None]]) -> None:
    for finding in report.findings:
        stdout.print(f"{escape(finding.path)}:{finding.line}: {finding.hint}", markup=True)
    for path, reason in report.skipped:
        stderr.print(f"skipped {escape(path)}: {escape(reason)}")
    for item in revoked:
        where = f" ({item['key_id']})" if item["key_id"] else ""
        stderr.print(f"{item['hint']}{where}: {item['result']}")
    keys = len(report.unique_keys())
    files = len({finding.path for finding in report.findings})
    if report.findings:
        stderr.print(
            f"[bold red]Found {keys} key{'s' * (keys != 1)} in {files} file{'s' * (files != 1)}"
            f"[/] ({report.files_scanned} scanned). Revoke them (keyplane scan --revoke, or "
            "keyplane keys revoke) and remove them from the files and their history."
        )
    else:
        stderr.print(f"No keys found ({report.files_scanned} files scanned).")
