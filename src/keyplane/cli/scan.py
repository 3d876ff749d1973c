"""``keyplane scan``: find leaked Keyplane keys in files and git work trees."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import typer
from rich.markup import escape

from keyplane.cli.client_support import URL_OPTION, client
from keyplane.cli.output import print_json, stderr, stdout
from keyplane.client import Client
from keyplane.client.scan import DEFAULT_MAX_BYTES, IGNORED, Scanner, ScanReport
from keyplane.core.errors import KeyplaneError
from keyplane.core.keys import SecretKey


def scan(
    paths: list[Path] | None = typer.Argument(
        None, help="Files or directories (default: .); in a git work tree, the files git tracks."
    ),
    prefix: list[str] = typer.Option(
        [], "--prefix", help="Key prefix to look for; repeat (default: KEYPLANE_KEY_PREFIX or kp)."
    ),
    max_bytes: str = typer.Option(
        f"{DEFAULT_MAX_BYTES // 1024 // 1024}MiB",
        "--max-bytes",
        envvar="KEYPLANE_SCAN_MAX_BYTES",
        help="Skip (and list) files larger than this: bytes, or with KiB, MiB, GiB.",
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
    """Report every checksum-valid Keyplane key in PATHS, plain or encoded (UTF-16, base64,
    escapes, gzip), as file:line or file@offset (masked), and what was skipped; exit 1 if any."""
    try:
        scanner = Scanner(prefix, max_bytes=parse_size(max_bytes), use_git=not no_git)
    except (KeyplaneError, ValueError) as error:
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
                    {
                        "path": scanner.mask(f.path),
                        "line": f.line,
                        "column": f.column,
                        "offset": f.offset,
                        "encoding": f.encoding,
                        "hint": f.hint,
                    }
                    for f in report.findings
                ],
                "files_scanned": report.files_scanned,
                "bytes_scanned": report.bytes_scanned,
                "skipped": [
                    {
                        "path": scanner.mask(item.path),
                        "reason": item.reason,
                        "detail": scanner.mask(item.detail),
                    }
                    for item in report.skipped
                ],
                "skipped_counts": report.skipped_counts(),
                "revoked": revoked,
            }
        )
    else:
        _print(report, revoked, scanner.mask)
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


_SIZE = re.compile(r"\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``2097152``, ``512KiB``, ``2MiB``, ``1G``: a size in bytes (units are powers of 1024)."""
    match = _SIZE.fullmatch(text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"--max-bytes: {text!r} is not a size like 2097152, 512KiB or 10MiB")
    return int(match.group(1)) * _UNITS[match.group(2)[:1].lower()]


def _print(
    report: ScanReport, revoked: list[dict[str, str | None]], mask: Callable[[str], str]
) -> None:
    for finding in report.findings:
        stdout.print(escape(mask(str(finding))))
    for item in report.skipped:
        # Ignored files are expected (that is where keys belong): counted, listed with --json.
        if item.reason != IGNORED:
            detail = f" ({item.detail})" if item.detail else ""
            shown = mask(f"skipped {item.path}: {item.reason}{detail}")
            stderr.print(escape(shown))
    for result in revoked:
        where = f" ({result['key_id']})" if result["key_id"] else ""
        stderr.print(f"{result['hint']}{where}: {result['result']}")
    keys = len(report.unique_keys())
    files = len({finding.path for finding in report.findings})
    count = report.files_scanned
    scanned = f"{count} file{'s' * (count != 1)}, {_megabytes(report.bytes_scanned)} scanned"
    counts = report.skipped_counts()
    if counts:
        reasons = ", ".join(f"{number} {reason}" for reason, number in counts.items())
        scanned += f"; skipped: {reasons}"
    if report.findings:
        stderr.print(
            f"[bold red]Found {keys} key{'s' * (keys != 1)} in {files} file{'s' * (files != 1)}"
            f"[/] ({escape(scanned)}). Revoke them (keyplane scan --revoke, or "
            "keyplane keys revoke) and remove them from the files and their history."
        )
    else:
        stderr.print(f"No keys found ({escape(scanned)}).")


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size} bytes"
