"""No secret in the clear anywhere: one walk through every API endpoint and console
action with every logger at DEBUG, then a search for every key, password, session
cookie, CSRF token and invitation token that the walk saw, in every log record
(message and traceback), every error answer, and every row of every table."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from keyplane.service.keys.leaks import GitHubKeyring
from keyplane.service.services import Services
from keyplane.storage.models import Base
from tests.console.conftest import PASSWORD, Browser
from tests.security.github import GitHubSigner, report
from tests.support import Tenant, bearer

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEY = re.compile(r"kp_[0-9A-Za-z]{36}")


class Recorder:
    """Every secret the walk handles, and every error answer it got."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        #: CSRF tokens: secrets too, but every console page (error pages included)
        #: carries its own visitor's token in its forms, by design.
        self.csrf_tokens: set[str] = set()
        self.errors: list[httpx.Response] = []

    def saw(self, response: httpx.Response) -> httpx.Response:
        text = response.text
        self.secrets.update(_KEY.findall(text))  # keys revealed by create / roll
        self.csrf_tokens.update(_CSRF.findall(text))
        for name, value in response.cookies.items():
            if name.startswith("keyplane"):
                self.secrets.add(value)
        for header in response.headers.get_list("set-cookie"):
            value = header.split("=", 1)[1].split(";", 1)[0]
            if len(value) >= 16:
                self.secrets.add(value)
        if response.status_code >= 400:
            self.errors.append(response)
        return response


def _walk_api(client: TestClient, tenant: Tenant, rec: Recorder, services: Services) -> None:
    h = tenant.headers
    rec.secrets.add(tenant.key)
    base = f"/api/v1/projects/{tenant.project_id}/keys"
    created = rec.saw(
        client.post(base, json={"name": "hygiene", "scopes": ["keys:read"]}, headers=h)
    ).json()
    key_id, key = created["id"], created["key"]
    rec.saw(client.get("/api/v1/whoami", headers=bearer(key)))
    rec.saw(client.get(base, headers=h))
    rec.saw(client.get(f"/api/v1/keys/{key_id}", headers=h))
    rec.saw(client.patch(f"/api/v1/keys/{key_id}", json={"name": "renamed"}, headers=h))
    rolled = rec.saw(client.post(f"/api/v1/keys/{key_id}/roll", json={}, headers=h)).json()
    rec.saw(client.get("/api/v1/whoami", headers=bearer(rolled["key"])))
    rec.saw(client.post("/api/v1/verify", json={"key": rolled["key"]}, headers=h))
    # Mistakes and attacks that carry a key where it must not be echoed.
    rec.saw(client.post("/api/v1/verify", json={"key": key, "surprise": key}, headers=h))
    rec.saw(client.post("/api/v1/verify", json={"key": [key]}, headers=h))
    rec.saw(client.post("/api/v1/verify", json={"key": key, "client_ip": key}, headers=h))
    rec.saw(client.post(base, json={"name": "x", "scopes": [key]}, headers=h))
    rec.saw(client.post(base, json={"name": "x", "ip_allowlist": [key]}, headers=h))
    rec.saw(client.post(base, json={"name": "x", "expires_in": key[:20]}, headers=h))
    rec.saw(client.get(f"/api/v1/whoami?api_key={key}"))
    rec.saw(client.get(f"/api/v1/keys/{key}", headers=h))
    rec.saw(client.get("/api/v1/whoami", headers=bearer(key[:-1] + "x")))
    rec.saw(client.get("/api/v1/audit-events", params={"key_id": key}, headers=h))
    rec.saw(client.delete(f"/api/v1/keys/{key_id}", headers=h))
    rec.saw(client.get("/api/v1/whoami", headers=bearer(key)))
    rec.saw(client.post("/api/v1/projects", json={"name": "Second"}, headers=h))
    rec.saw(client.get("/api/v1/projects", headers=h))
    rec.saw(client.get("/api/v1/audit-events", headers=h))
    # A GitHub leak report: its body is a list of keys.
    signer = GitHubSigner.generate()
    services.leaks.keyring = GitHubKeyring.from_document(signer.document())
    body = report(rolled["key"], "kp_" + "A" * 36)
    rec.saw(client.post("/api/v1/leaks/github", content=body, headers=signer.headers(body)))
    rec.saw(client.post("/api/v1/leaks/github", content=body))
    rec.saw(client.get("/readyz"))


def _post(browser: Browser, rec: Recorder, path: str, data: dict[str, object]) -> httpx.Response:
    token = _CSRF.search(browser.get("/console/keys", follow_redirects=True).text)
    if token:
        rec.csrf_tokens.add(token.group(1))
    return rec.saw(browser.post(path, data))


def _walk_console(make_browser: Callable[..., Browser], rec: Recorder) -> None:
    passwords = [PASSWORD, "second password 2", "third password 3", "invitee password 4"]
    rec.secrets.update(passwords)
    owner = make_browser("203.0.113.50")
    rec.saw(owner.sign_up("hygiene@acme.test", "Hygiene"))
    rec.secrets.add(owner.session_token)
    project = owner.project_id()
    created = _post(owner, rec, "/console/keys", {"project": project, "name": "console key"})
    key_id = re.search(r"/console/keys/(key_\w+)", created.text)
    assert key_id
    key_id_text = key_id.group(1)
    for path in ("/console/keys", f"/console/keys/{key_id_text}", "/console/projects"):
        rec.saw(owner.get(path))
    rec.saw(owner.get("/console/audit"))
    rec.saw(owner.get("/console/members"))
    _post(owner, rec, f"/console/keys/{key_id_text}/rename", {"name": "renamed"})
    _post(owner, rec, f"/console/keys/{key_id_text}/disable", {})
    _post(owner, rec, f"/console/keys/{key_id_text}/enable", {})
    _post(owner, rec, f"/console/keys/{key_id_text}/roll", {"grace_seconds": "0"})
    _post(owner, rec, f"/console/keys/{key_id_text}/revoke", {})
    _post(owner, rec, "/console/projects", {"name": "Console project"})
    link = owner.invite("invitee@acme.test", "member")
    rec.secrets.add(link.split("token=", 1)[1])
    invitee = make_browser("203.0.113.51")
    rec.saw(invitee.join(link, passwords[3]))
    rec.secrets.add(invitee.session_token)
    _post(
        owner,
        rec,
        "/console/account/password",
        {
            "current_password": PASSWORD,
            "password": passwords[1],
            "confirm_password": passwords[1],
        },
    )
    # Wrong passwords, a wrong current password, a forged CSRF token.
    stranger = make_browser("203.0.113.52")
    rec.saw(stranger.sign_in("hygiene@acme.test", passwords[2]))
    _post(
        owner,
        rec,
        "/console/account/password",
        {"current_password": passwords[2], "password": "x", "confirm_password": "y"},
    )
    rec.saw(owner.post("/console/projects", {"name": "x", "csrf_token": passwords[2]}))
    rec.saw(owner.sign_in("hygiene@acme.test", passwords[1]))
    _post(owner, rec, "/console/signout", {})


def _database_text(services: Services) -> str:
    parts: list[str] = []
    with services.database.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


def test_no_secret_reaches_a_log_an_error_answer_or_the_database(
    client: TestClient,
    tenant: Tenant,
    services: Services,
    make_browser: Callable[..., Browser],
    open_signup: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("keyplane", "sqlalchemy.engine", "uvicorn", "fastapi", "starlette"):
        caplog.set_level(logging.DEBUG, logger=name)
    rec = Recorder()

    _walk_api(client, tenant, rec, services)
    _walk_console(make_browser, rec)
    services.usage.flush()

    # The walk saw what it means to check: 5 keys, 4 passwords, sessions, an invitation.
    assert len([s for s in rec.secrets if s.startswith("kp_")]) >= 5
    assert len(rec.secrets) >= 12
    assert len(caplog.records) > 100  # DEBUG was really on (SQL statements, requests)
    # The server's records; httpx and httpcore log the *test client's* side of each call.
    server_records = [
        record for record in caplog.records if not record.name.startswith(("httpx", "httpcore"))
    ]
    logged = "\n".join(
        record.getMessage() + (caplog.handler.format(record) if record.exc_info else "")
        for record in server_records
    )
    errors = "\n".join(response.text for response in rec.errors)
    problems = "\n".join(
        response.text
        for response in rec.errors
        if response.headers.get("content-type") == "application/problem+json"
    )
    stored = _database_text(services)
    assert len(rec.errors) >= 10
    assert rec.csrf_tokens
    for secret in rec.secrets:
        assert secret not in logged, "a secret reached a log record"
        assert secret not in errors, "a secret reached an error answer"
        assert secret not in stored, "a secret is stored in the clear"
    for token in rec.csrf_tokens:
        assert token not in logged, "a CSRF token reached a log record"
        assert token not in problems, "a CSRF token reached a problem answer"
        assert token not in stored, "a CSRF token is stored in the clear"
