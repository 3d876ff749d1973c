from __future__ import annotations

import json
import os
import pty
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from select import select as select_fds

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from typer.testing import CliRunner

from keyplane.cli.main import app
from keyplane.config import Settings
from keyplane.core.errors import AuthenticationFailed
from keyplane.core.keys import KeyFormat
from keyplane.service.services import Services
from keyplane.storage.models import User

PASSWORD = "correct horse battery"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("KEYPLANE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KEYPLANE_DATABASE_URL", raising=False)
    return CliRunner()


def bootstrap(
    runner: CliRunner, org: str = "Acme", *extra: str, stdin: str | None = None
) -> dict[str, object]:
    result = runner.invoke(
        app,
        [
            "admin",
            "bootstrap",
            "--org",
            org,
            "--project",
            "Default",
            "--email",
            "me@acme.test",
            "--json",
            *extra,
        ],
        input=stdin,
    )
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_bootstrap_prints_a_management_key_once(runner: CliRunner) -> None:
    data = bootstrap(runner)
    key = data["key"]
    assert isinstance(key, dict)
    assert KeyFormat().is_key(key["key"])
    assert key["scopes"] == ["*"]
    assert data["project"] == {"id": key["project_id"], "name": "Default"}


def test_bootstrap_again_adds_another_organization_but_not_the_same_one(runner: CliRunner) -> None:
    first = bootstrap(runner, "Acme")
    second = bootstrap(runner, "Globex")
    assert first["organization"] != second["organization"]
    assert first["owner"] == second["owner"]  # the same person owns both
    again = runner.invoke(
        app, ["admin", "bootstrap", "--org", "Acme", "--project", "P", "--email", "x@acme.test"]
    )
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_bootstrap_with_password_stores_an_argon2id_hash(runner: CliRunner, tmp_path: Path) -> None:
    bootstrap(runner, "Acme", "--password-stdin", stdin="correct horse battery\n")
    services = Services.open(Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path)}))
    try:
        with services.database.read() as session:
            stored = session.scalars(select(User.password_hash)).one()
    finally:
        services.close()
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, "correct horse battery")


def test_bootstrap_rejects_a_short_password(runner: CliRunner) -> None:
    result = runner.invoke(
        app,
        [
            "admin",
            "bootstrap",
            "--org",
            "A",
            "--project",
            "P",
            "--email",
            "a@a.test",
            "--password-stdin",
        ],
        input="short\n",
    )
    assert result.exit_code == 1
    assert "at least" in result.output


def test_create_key_json_has_the_fields_scripts_need(runner: CliRunner) -> None:
    data = bootstrap(runner)
    project = data["project"]
    assert isinstance(project, dict)
    result = runner.invoke(
        app,
        [
            "admin", "create-key", "--org", "Acme", "--project", "Default", "--name", "ci",
            "--scope", "keys:read", "--scope", "keys:verify", "--expires-in", "30d", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert {
        "id",
        "key",
        "name",
        "project_id",
        "organization_id",
        "scopes",
        "expires_at",
        "hint",
    } <= set(created)
    assert created["project_id"] == project["id"]
    assert created["scopes"] == ["keys:read", "keys:verify"]
    assert created["expires_at"] is not None
    by_id = runner.invoke(
        app,
        [
            "admin",
            "create-key",
            "--org",
            str(created["organization_id"]),
            "--project",
            str(project["id"]),
            "--name",
            "x",
        ],
    )
    assert by_id.exit_code == 0, by_id.output
    assert "only time the key is shown" in by_id.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--org", "Nope", "--project", "Default"],
            "organization 'Nope' not found",
            id="unknown-org",
        ),
        pytest.param(
            ["--org", "Acme", "--project", "Nope"], "project 'Nope' not found", id="unknown-project"
        ),
        pytest.param(
            ["--org", "Acme", "--project", "Default", "--expires-in", "soon"],
            "not a duration",
            id="bad-duration",
        ),
        pytest.param(
            ["--org", "Acme", "--project", "Default", "--scope", "BAD SCOPE"],
            "not a scope",
            id="bad-scope",
        ),
    ],
)
def test_create_key_errors_are_one_clear_line(
    runner: CliRunner, arguments: list[str], message: str
) -> None:
    bootstrap(runner)
    result = runner.invoke(app, ["admin", "create-key", "--name", "x", *arguments])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_db_upgrade_and_current(runner: CliRunner) -> None:
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0
    assert "upgraded from empty" in upgraded.output
    assert "already at" in runner.invoke(app, ["db", "upgrade"]).output
    assert "up to date" in runner.invoke(app, ["db", "current"]).output


def test_a_wrong_setting_is_reported_not_raised(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYPLANE_DATABASE_URL", "mysql://nope")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "KEYPLANE_DATABASE_URL" in result.output


def test_an_unreachable_database_is_one_line_not_a_traceback(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    monkeypatch.setenv(
        "KEYPLANE_DATABASE_URL", f"postgresql://nobody:secret-pw@127.0.0.1:{port}/keyplane"
    )
    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 1
    assert "cannot use the database" in result.output
    assert "KEYPLANE_DATABASE_URL" in result.output
    assert "Traceback" not in result.output
    assert "secret-pw" not in result.output


def test_an_in_memory_database_is_refused(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYPLANE_DATABASE_URL", "sqlite://")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "in-memory" in result.output


def test_a_schema_from_a_newer_keyplane_is_named_as_such(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    with sqlite3.connect(tmp_path / "keyplane.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    current = runner.invoke(app, ["db", "current"])
    assert "ahead" in current.output
    for command in (
        ["db", "upgrade"],
        ["admin", "create-key", "--org", "A", "--project", "P", "--name", "x"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        assert "newer Keyplane" in result.output
        assert "Traceback" not in result.output


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the owner can always sign in (issue 11, finding 1) ----------------------------------


def _sign_in(tmp_path: Path, email: str, password: str) -> bool:
    services = Services.open(Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path)}))
    try:
        services.sessions.sign_in(email, password)
    except AuthenticationFailed:
        return False
    finally:
        services.close()
    return True


def test_bootstrap_without_a_terminal_or_password_says_how_to_set_one(
    runner: CliRunner, tmp_path: Path
) -> None:
    data = bootstrap(runner, "Acme")
    assert data["owner"] == {
        "id": data["owner"]["id"],
        "email": "me@acme.test",
        "has_password": False,
    }  # type: ignore[index]
    result = runner.invoke(
        app, ["admin", "bootstrap", "--org", "Globex", "--project", "P", "--email", "x@x.test"]
    )
    assert result.exit_code == 0
    assert "keyplane admin set-password x@x.test" in result.stderr
    set_it = runner.invoke(
        app, ["admin", "set-password", "x@x.test", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert set_it.exit_code == 0, set_it.output
    assert PASSWORD not in set_it.output
    assert _sign_in(tmp_path, "x@x.test", PASSWORD)


def test_set_password_refuses_without_a_terminal_or_stdin_and_for_an_unknown_user(
    runner: CliRunner,
) -> None:
    bootstrap(runner, "Acme")
    no_tty = runner.invoke(app, ["admin", "set-password", "me@acme.test"])
    assert no_tty.exit_code == 1
    assert "--password-stdin" in no_tty.output
    unknown = runner.invoke(
        app, ["admin", "set-password", "who@acme.test", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert unknown.exit_code == 1


def test_bootstrap_never_replaces_an_existing_owners_password(
    runner: CliRunner, tmp_path: Path
) -> None:
    bootstrap(runner, "Acme", "--password-stdin", stdin=PASSWORD + "\n")
    args = ["admin", "bootstrap", "--org", "Globex", "--project", "P", "--email", "me@acme.test"]
    again = runner.invoke(app, [*args, "--password-stdin"], input="another password\n")
    assert again.exit_code == 1
    assert "already has a console password" in again.output
    keeps = bootstrap(runner, "Initech")
    assert keeps["owner"]["has_password"] is True  # type: ignore[index]
    assert _sign_in(tmp_path, "me@acme.test", PASSWORD)


def _run_in_terminal(args: list[str], answers: list[str], env: dict[str, str]) -> str:
    """Run the real ``keyplane`` in a pseudo-terminal, typing ``answers`` at its prompts."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "keyplane.cli", *args],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        close_fds=True,
    )
    os.close(child)
    output = b""
    deadline = time.monotonic() + 60
    pending = list(answers)
    answered = 0
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select_fds([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                # Answer only a new prompt: getpass flushes what was typed ahead.
                if pending and len(output) > answered and output.rstrip().endswith(b":"):
                    time.sleep(0.1)  # let getpass switch echo off first
                    os.write(main, pending.pop(0).encode() + b"\n")
                    answered = len(output)
            elif process.poll() is not None:
                break
        assert process.wait(timeout=10) == 0, output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    return output.decode(errors="replace")


def test_bootstrap_at_a_terminal_asks_for_the_password_twice_hidden(tmp_path: Path) -> None:
    env = {**os.environ, "KEYPLANE_DATA_DIR": str(tmp_path)}
    env.pop("KEYPLANE_DATABASE_URL", None)
    output = _run_in_terminal(
        ["admin", "bootstrap", "--org", "Acme", "--project", "Default", "--email", "me@acme.test"],
        [PASSWORD, PASSWORD],
        env,
    )
    assert "Console password for me@acme.test" in output
    assert "Repeat it" in output
    assert PASSWORD not in output  # hidden: not echoed
    assert "set-password" not in output
    assert _sign_in(tmp_path, "me@acme.test", PASSWORD)


def test_bootstrap_says_which_database_it_wrote_and_where_to_sign_in(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "admin",
            "bootstrap",
            "--org",
            "Acme",
            "--project",
            "Default",
            "--email",
            "me@acme.test",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert f"sqlite:///{tmp_path / 'keyplane.db'}" in result.stdout
    assert "http://127.0.0.1:8000/console/signin (as me@acme.test)" in result.stdout
    data = bootstrap(runner, "Globex")
    assert data["database"] == f"sqlite:///{tmp_path / 'keyplane.db'}"
    assert data["console"] == "http://127.0.0.1:8000/console/signin"


def test_reset_password_prints_a_one_time_link_that_sets_the_password(
    runner: CliRunner, tmp_path: Path
) -> None:
    bootstrap(runner, "Acme", "--password-stdin", stdin=PASSWORD + "\n")
    result = runner.invoke(app, ["admin", "reset-password", "me@acme.test"])
    assert result.exit_code == 0, result.output
    url = next(line for line in result.stdout.splitlines() if "token=" in line).strip()
    assert url.startswith("http://127.0.0.1:8000/console/reset-password?token=")
    token = url.split("token=", 1)[1]
    services = Services.open(Settings.from_env())
    try:
        services.email_links.reset_password(token, "the operator's new one")
        with pytest.raises(AuthenticationFailed):
            services.sessions.sign_in("me@acme.test", PASSWORD)
        assert services.sessions.sign_in("me@acme.test", "the operator's new one").record
        with pytest.raises(Exception, match="link"):
            services.email_links.reset_password(token, "used a second time")
    finally:
        services.close()
    unknown = runner.invoke(app, ["admin", "reset-password", "nobody@acme.test"])
    assert unknown.exit_code != 0
    assert "nobody@acme.test" in unknown.output


def test_mail_lists_the_outbox(runner: CliRunner) -> None:
    result = runner.invoke(app, ["admin", "mail"])
    assert result.exit_code == 0, result.output
    assert "The outbox is empty." in result.stdout
    assert "KEYPLANE_SMTP_URL" in result.output


def test_scan_keys_ages_keys_with_now(runner: CliRunner) -> None:
    bootstrap(runner)
    created = runner.invoke(
        app,
        [
            "admin",
            "create-key",
            "--org",
            "Acme",
            "--project",
            "Default",
            "--name",
            "ci",
            "--expires-in",
            "3d",
            "--json",
        ],
    )
    assert created.exit_code == 0, created.output
    soon = runner.invoke(app, ["admin", "scan-keys", "--json"])
    assert soon.exit_code == 0, soon.output
    assert json.loads(soon.stdout)["counts"] == {"expiring_7d": 1}
    later = time.time() + 4 * 86400
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(later))
    aged = runner.invoke(app, ["admin", "scan-keys", "--now", at])
    assert aged.exit_code == 0, aged.output
    assert "expired: 1" in aged.stdout
    again = runner.invoke(app, ["admin", "scan-keys", "--now", at])
    assert "nothing to do" in again.stdout
    bad = runner.invoke(app, ["admin", "scan-keys", "--now", "tomorrow"])
    assert bad.exit_code == 1
    assert "ISO 8601" in bad.output
