"""The key holder's commands and the SDK's user-facing checks, as real processes
against a real server (Uvicorn in this test process, on a free loopback port)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from keyplane.cli.main import app
from keyplane.core.keys import KeyFormat
from keyplane.service.records import Actor, Caller
from tests.live import LiveServer, subprocess_env
from tests.support import bearer

PYTHON = sys.executable
KEYPLANE = [PYTHON, "-m", "keyplane.cli"]
WHOAMI_SNIPPET = "import keyplane; print(keyplane.Client().whoami())"


def run(
    arguments: list[str], home: Path, *, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        arguments,
        cwd=work,
        env=subprocess_env(home, **env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_sdk_finds_the_key_and_url_in_the_environment(
    server: LiveServer, tmp_path: Path
) -> None:
    tenant = server.tenant()
    done = run(
        [PYTHON, "-c", WHOAMI_SNIPPET],
        tmp_path,
        KEYPLANE_URL=server.url,
        KEYPLANE_API_KEY=tenant.key,
    )
    assert done.returncode == 0, done.stderr
    assert "Management key" in done.stdout
    assert tenant.project_id in done.stdout
    assert tenant.key not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        pytest.param("/bin/bash", "export KEYPLANE_API_KEY=", id="bash"),
        pytest.param("/usr/bin/zsh", "~/.zshrc", id="zsh"),
        pytest.param("/usr/bin/fish", "--universal --export", id="fish"),
    ],
)
def test_without_any_key_the_error_says_how_to_set_the_variable(
    server: LiveServer, tmp_path: Path, shell: str, expected: str
) -> None:
    done = run([PYTHON, "-c", WHOAMI_SNIPPET], tmp_path, KEYPLANE_URL=server.url, SHELL=shell)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()
    assert any(line.startswith("keyplane.client.errors.MissingAPIKey: ") for line in last)
    assert "KEYPLANE_API_KEY" in done.stderr
    assert expected in done.stderr


def test_a_dotenv_file_in_the_working_directory_is_used(server: LiveServer, tmp_path: Path) -> None:
    tenant = server.tenant()
    (tmp_path / "work").mkdir(exist_ok=True)
    (tmp_path / "work" / ".env").write_text(
        f"KEYPLANE_URL={server.url}\nKEYPLANE_API_KEY={tenant.key}\n"
    )
    done = run([PYTHON, "-c", WHOAMI_SNIPPET], tmp_path)
    assert done.returncode == 0, done.stderr
    assert tenant.key_id in done.stdout


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("keyring.backends.fail.Keyring", id="no-key-store-file-fallback"),
        pytest.param("keyrings.alt.file.PlaintextKeyring", id="plain-text-keyring-file-fallback"),
    ],
)
def test_login_then_whoami_works_without_the_variable(
    server: LiveServer, tmp_path: Path, backend: str
) -> None:
    tenant = server.tenant()
    env = {"KEYPLANE_URL": server.url, "PYTHON_KEYRING_BACKEND": backend}
    login = run([*KEYPLANE, "login", "--with-key-stdin"], tmp_path, stdin=tenant.key + "\n", **env)
    assert login.returncode == 0, login.stderr
    assert "Logged in to" in login.stdout
    assert tenant.key_id in login.stdout
    credentials = tmp_path / ".config" / "keyplane" / "credentials.json"
    # Neither is a key store: keyrings.alt's plain-text file is not called one either.
    assert "No system key store is available" in login.stderr
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert str(credentials) in login.stdout
    assert "system key store" not in login.stdout
    if backend.endswith("PlaintextKeyring"):
        assert "PlaintextKeyring" in login.stderr or "Plaintext" in login.stderr

    # No KEYPLANE_URL either: login remembered the server.
    whoami = run([*KEYPLANE, "whoami", "--json"], tmp_path, PYTHON_KEYRING_BACKEND=backend)
    assert whoami.returncode == 0, whoami.stderr
    identity = json.loads(whoami.stdout)
    assert identity["id"] == tenant.key_id
    assert identity["url"] == server.url
    sdk = run([PYTHON, "-c", WHOAMI_SNIPPET], tmp_path, PYTHON_KEYRING_BACKEND=backend)
    assert sdk.returncode == 0, sdk.stderr
    assert tenant.key_id in sdk.stdout

    logout = run([*KEYPLANE, "logout"], tmp_path, PYTHON_KEYRING_BACKEND=backend)
    assert logout.returncode == 0, logout.stderr
    assert "Removed the key" in logout.stdout
    after = run([*KEYPLANE, "whoami"], tmp_path, **env)
    assert after.returncode == 1
    assert "KEYPLANE_API_KEY" in after.stderr
    outputs = login.stdout + login.stderr + whoami.stdout + logout.stdout + after.stderr
    assert tenant.key not in outputs


def test_login_refuses_a_key_the_server_refuses_and_stores_nothing(
    server: LiveServer, tmp_path: Path
) -> None:
    wrong = KeyFormat().generate().reveal()
    done = run(
        [*KEYPLANE, "login", "--with-key-stdin"], tmp_path, stdin=wrong, KEYPLANE_URL=server.url
    )
    assert done.returncode == 1
    assert "refused this key" in done.stderr
    assert "Nothing was stored" in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert not (tmp_path / ".config" / "keyplane" / "credentials.json").exists()


@pytest.mark.parametrize(
    ("shell", "line"),
    [
        pytest.param("bash", "export KEYPLANE_API_KEY='<your key>'", id="bash"),
        pytest.param("zsh", "export KEYPLANE_API_KEY='<your key>'", id="zsh"),
        pytest.param(
            "fish",
            "read --silent --universal --export --prompt-str 'Paste your key: ' KEYPLANE_API_KEY",
            id="fish",
        ),
        pytest.param("powershell", "$env:KEYPLANE_API_KEY = '<your key>'", id="powershell"),
        pytest.param("cmd", 'setx KEYPLANE_API_KEY "%KEYPLANE_API_KEY%"', id="cmd"),
    ],
)
def test_env_prints_the_lines_for_each_shell(tmp_path: Path, shell: str, line: str) -> None:
    done = run([*KEYPLANE, "env", "--shell", shell], tmp_path)
    assert done.returncode == 0, done.stderr
    assert line in done.stdout.splitlines()


def test_env_shows_the_stored_key_only_with_show(server: LiveServer, tmp_path: Path) -> None:
    tenant = server.tenant()
    env = {"KEYPLANE_URL": server.url}
    run([*KEYPLANE, "login", "--with-key-stdin"], tmp_path, stdin=tenant.key, **env)
    hidden = run([*KEYPLANE, "env"], tmp_path, **env)
    assert tenant.key not in hidden.stdout
    assert "export KEYPLANE_API_KEY='<your key>'" in hidden.stdout
    assert f"export KEYPLANE_URL={server.url}" in hidden.stdout
    shown = run([*KEYPLANE, "env", "--show"], tmp_path, **env)
    assert f"export KEYPLANE_API_KEY={tenant.key}" in shown.stdout.splitlines()


def test_env_show_without_any_key_says_how_to_get_one(tmp_path: Path) -> None:
    done = run([*KEYPLANE, "env", "--show", "--shell", "bash"], tmp_path)
    assert done.returncode == 1
    assert "KEYPLANE_API_KEY" in done.stderr
    assert "keyplane login" in done.stderr


def test_keys_and_audit_commands(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = server.tenant()
    monkeypatch.setenv("KEYPLANE_URL", server.url)
    monkeypatch.setenv("KEYPLANE_API_KEY", tenant.key)
    runner = CliRunner()

    def cli(*arguments: str) -> str:
        result = runner.invoke(app, list(arguments))
        assert result.exit_code == 0, result.output
        assert tenant.key not in result.output
        return result.stdout

    created = json.loads(cli("keys", "create", "--name", "ci", "--scope", "keys:read", "--json"))
    assert KeyFormat().is_key(created["key"])
    table = cli("keys", "list")
    assert created["id"] in table
    assert "ci" in table
    assert created["hint"] in table
    assert created["key"] not in table
    listed = json.loads(cli("keys", "list", "--json", "--status", "active"))
    assert {item["id"] for item in listed} == {created["id"], tenant.key_id}
    shown = json.loads(cli("keys", "show", created["id"], "--json"))
    assert shown["name"] == "ci"
    assert "key" not in shown
    rolled = json.loads(cli("keys", "roll", created["id"], "--grace", "1h", "--json"))
    assert rolled["rolled_from_id"] == created["id"]
    text = cli("keys", "create", "--name", "plain", "--expires-in", "30d")
    assert "This is the only time" not in text  # the warning goes to stderr
    assert any(KeyFormat().is_key(line.strip()) for line in text.splitlines())
    revoked = json.loads(cli("keys", "revoke", rolled["id"], "--yes", "--json"))
    assert revoked["status"] == "revoked"
    events = json.loads(cli("audit", "--key", created["id"], "--json"))
    assert [event["action"] for event in events] == ["key.rolled", "key.created"]
    assert "key.revoked" in cli("audit", "--limit", "5")

    research = server.services.projects.create_project(
        Caller(tenant.organization_id, ("*",), Actor.operator()), "Research"
    )
    named = json.loads(cli("keys", "create", "--name", "r", "--project", "Research", "--json"))
    assert named["project_id"] == research.id
    every = json.loads(cli("keys", "list", "--project", research.id, "--all", "--json"))
    assert [item["id"] for item in every] == [named["id"]]
    unknown = runner.invoke(app, ["keys", "list", "--project", "Nope"])
    assert unknown.exit_code == 1
    assert "no project named 'Nope'" in unknown.output

    refused = runner.invoke(app, ["keys", "show", "key_0000000000000000"])
    assert refused.exit_code == 1
    assert "404" in refused.output
    aborted = runner.invoke(app, ["keys", "revoke", created["id"]], input="n\n")
    assert aborted.exit_code == 1
    bad = runner.invoke(app, ["keys", "create", "--name", "x", "--expires-in", "soon"])
    assert bad.exit_code == 1
    assert "not a duration" in bad.output


def test_login_at_the_hidden_prompt_then_whoami_as_a_table(server: LiveServer) -> None:
    tenant = server.tenant()
    runner = CliRunner()
    login = runner.invoke(app, ["login", "--url", server.url], input=tenant.key + "\n")
    assert login.exit_code == 0, login.output
    assert tenant.key not in login.output  # the prompt does not echo the key
    whoami = runner.invoke(app, ["whoami"])
    assert whoami.exit_code == 0, whoami.output
    for expected in ("Management key", tenant.key_id, tenant.project_id, server.url):
        assert expected in whoami.stdout
    assert "credentials.json" in whoami.stdout  # where the key came from
    assert tenant.key not in whoami.output


def test_canary_and_callers_commands(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = server.tenant()
    monkeypatch.setenv("KEYPLANE_URL", server.url)
    monkeypatch.setenv("KEYPLANE_API_KEY", tenant.key)
    runner = CliRunner()

    def cli(*arguments: str) -> str:
        result = runner.invoke(app, list(arguments))
        assert result.exit_code == 0, result.output
        return result.output

    canary = json.loads(cli("keys", "create", "--name", "bait", "--canary", "--json"))
    assert canary["canary"] is True
    used = json.loads(cli("keys", "create", "--name", "ci", "--json"))
    assert httpx.get(f"{server.url}/api/v1/whoami", headers=bearer(used["key"])).is_success
    server.services.usage.flush()
    callers = json.loads(cli("keys", "callers", used["id"], "--json"))
    assert [c["value"] for c in callers["ips"]] == ["127.0.0.1"]
    assert "1 client address used this key in the last 30 days." in cli(
        "keys", "callers", used["id"]
    )
    aborted = runner.invoke(app, ["keys", "revoke", used["id"]], input="n\n")
    assert "1 client address used this key in the last 7 days." in aborted.output
