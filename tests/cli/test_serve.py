"""``keyplane serve`` as a real process: the newcomer's walkthrough, end to end."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from uvicorn.importer import import_from_string

import keyplane.app
from keyplane.app import KeyplaneApp
from keyplane.cli import server as cli_server
from keyplane.cli.main import app as cli_app
from tests.processes import admin, fresh, server

pytestmark = pytest.mark.slow


def test_walkthrough_on_sqlite_with_no_configuration(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    with server(data_dir, log) as base:
        boot = admin(
            data_dir,
            "bootstrap",
            "--org",
            "Acme",
            "--project",
            "Default",
            "--email",
            "me@acme.test",
        )
        management = boot["key"]
        assert isinstance(management, dict)
        created = admin(
            data_dir,
            "create-key",
            "--org",
            "Acme",
            "--project",
            "Default",
            "--name",
            "notebook",
            "--scope",
            "keys:read",
        )
        key = str(created["key"])
        for headers in (
            {"Authorization": f"Bearer {key}"},
            {"Authorization": f"apiKey {key}"},
            {"X-API-Key": key},
        ):
            response = fresh.get(f"{base}/api/v1/whoami", headers=headers)
            assert response.status_code == 200
            assert response.json()["name"] == "notebook"

        changed = key[:-5] + ("x" if key[-5] != "x" else "y") + key[-4:]
        refused = fresh.get(f"{base}/api/v1/whoami", headers={"Authorization": f"Bearer {changed}"})
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert "www-authenticate" in refused.headers
        assert fresh.get(f"{base}/api/v1/whoami?api_key={key}").status_code == 400

        manage = {"Authorization": f"Bearer {management['key']}"}
        time.sleep(1.5)  # the last-used buffer flushes at least once a second
        with sqlite3.connect(data_dir / "keyplane.db") as connection:
            (last_used,) = connection.execute(
                "SELECT last_used_at FROM api_keys WHERE id = ?", (created["id"],)
            ).fetchone()
        assert last_used is not None

        assert (
            fresh.delete(f"{base}/api/v1/keys/{created['id']}", headers=manage).status_code == 200
        )
        assert fresh.get(f"{base}/api/v1/whoami", headers={"X-API-Key": key}).status_code == 401
        assert (
            fresh.get(f"{base}/api/v1/keys/{created['id']}", headers=manage).json()["status"]
            == "revoked"
        )

    secrets = [key.encode(), str(management["key"]).encode()]
    for path in [log, *data_dir.rglob("*")]:
        if path.is_file():
            content = path.read_bytes()
            assert not any(secret in content for secret in secrets), f"a key leaked into {path}"
    server_log = log.read_text()
    assert "GET /api/v1/whoami" in server_log  # the access log is there, without the key
    assert "api_key=…" in server_log


def test_a_revocation_reaches_every_worker_within_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 tries of a revoked key from one address would pass the failed-key limit (429).
    monkeypatch.setenv("KEYPLANE_FAILED_KEY_LIMIT", "1000 per minute")
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    boot = admin(
        data_dir, "bootstrap", "--org", "Acme", "--project", "Default", "--email", "me@acme.test"
    )
    management = boot["key"]
    assert isinstance(management, dict)
    with server(data_dir, log, workers=2) as base:
        created = fresh.post(
            f"{base}/api/v1/projects/{management['project_id']}/keys",
            json={"name": "shared"},
            headers={"Authorization": f"Bearer {management['key']}"},
        ).json()
        headers = {"Authorization": f"Bearer {created['key']}"}
        for _ in range(40):  # warm both workers' caches (new connections spread over workers)
            assert fresh.get(f"{base}/api/v1/whoami", headers=headers).status_code == 200
        fresh.delete(
            f"{base}/api/v1/keys/{created['id']}",
            headers={"Authorization": f"Bearer {management['key']}"},
        )
        time.sleep(1.05)
        statuses = {
            fresh.get(f"{base}/api/v1/whoami", headers=headers).status_code for _ in range(40)
        }
        assert statuses == {401}


def test_serve_runs_the_factory_the_tests_app_fixture_builds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app: KeyplaneApp
) -> None:
    """One assembly: what ``keyplane serve`` hands Uvicorn is the factory the ``app``
    fixture calls (``tests/conftest.py`` ``served_app``), and there is no other."""
    handed: dict[str, object] = {}

    def record(name: str, /, **options: object) -> bool:
        handed.update(options, name=name)
        return True

    monkeypatch.setattr(cli_server, "run_uvicorn", record)
    monkeypatch.setenv("KEYPLANE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KEYPLANE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert handed["name"] == cli_server.APP_FACTORY
    assert handed["factory"] is True
    assert import_from_string(cli_server.APP_FACTORY) is keyplane.app.create_app
    assert type(app) is type(import_from_string(cli_server.APP_FACTORY)())
    assert not hasattr(keyplane.app, "create_server_app")


def test_a_served_whoami_and_verify_refuse_oversized_headers(tmp_path: Path) -> None:
    filler = {"X-Filler": "a" * 4000}
    with server(tmp_path / "data", tmp_path / "server.log", max_header_bytes="2048") as base:
        whoami = fresh.get(f"{base}/api/v1/whoami", headers=filler)
        verify = fresh.post(f"{base}/api/v1/verify", json={"key": "kp_x"}, headers=filler)
        for refused in (whoami, verify):
            assert refused.status_code == 431
            assert refused.json()["code"] == "HEADERS_TOO_LARGE"
        small = fresh.get(f"{base}/api/v1/whoami", headers={"X-Filler": "a" * 500})
        assert small.status_code == 401  # through the size limit, refused for the key
