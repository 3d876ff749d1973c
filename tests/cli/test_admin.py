from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from typer.testing import CliRunner

from keyplane.cli.main import app
from keyplane.config import Settings
from keyplane.core.keys import KeyFormat
from keyplane.service.services import Services
from keyplane.storage.models import User


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
