"""examples/fastapi_app.py and examples/flask_app.py, in local and in remote mode:
200 with a key holding the scope, 401 without a key, 403 with a key lacking it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from examples import fastapi_app, flask_app
from fastapi.testclient import TestClient

from keyplane.core.keys import KeyFormat
from keyplane.integrations import KeyVerifier, LocalVerifier, RemoteVerifier
from keyplane.integrations.verifiers import DEFAULT_CACHE_TTL
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from tests.live import LiveServer
from tests.support import Tenant, bearer


class Answer(Protocol):
    status_code: int
    headers: Any

    def json(self) -> Any: ...


class Keys:
    """A caller with reports:read, one without, and a service key with keys:verify."""

    def __init__(self, make: Any, tenant: Tenant) -> None:
        self.reader_id, self.reader = make(tenant, "reports:read", name="reader")
        self.other_id, self.other = make(tenant, "jobs:run", name="other")
        self.verifier_id, self.verifier = make(tenant, "keys:verify", name="reports service")


def local_make(services: Services) -> Any:
    def make(tenant: Tenant, *scopes: str, name: str) -> tuple[str, str]:
        caller = Caller(tenant.organization_id, ("*",), Actor.operator())
        created = services.keys.create(caller, tenant.project_id, name=name, scopes=scopes)
        return created.record.id, created.secret.reveal()

    return make


Mode = tuple[KeyVerifier, Keys, Any]


@pytest.fixture
def local(services: Services, tenant: Tenant) -> Mode:
    """In-process verification on the same database (SQLite, and PostgreSQL when configured)."""
    keys = Keys(local_make(services), tenant)
    operator = Caller(tenant.organization_id, ("*",), Actor.operator())
    return LocalVerifier(services), keys, lambda key_id: services.keys.revoke(operator, key_id)


@pytest.fixture
def remote(server: LiveServer) -> Iterator[Mode]:
    """Verification through a real Keyplane server's /api/v1/verify, with a keys:verify key."""
    tenant = server.tenant()
    keys = Keys(server.key, tenant)
    verifier = RemoteVerifier(keys.verifier, base_url=server.url, cache_ttl=0)
    try:
        yield verifier, keys, lambda key_id: server.revoke(tenant, key_id)
    finally:
        verifier.close()


def check_protocol(get: Any, keys: Keys, revoke: Any) -> None:
    ok: Answer = get("/reports", bearer(keys.reader))
    assert ok.status_code == 200
    assert ok.json()["key_id"] == keys.reader_id

    missing: Answer = get("/reports", {})
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "MISSING_KEY"
    assert missing.headers["www-authenticate"] == 'Bearer realm="keyplane"'

    lacking: Answer = get("/reports", {"X-API-Key": keys.other})
    assert lacking.status_code == 403
    assert lacking.json()["code"] == "INSUFFICIENT_SCOPE"
    assert "reports:read" in lacking.json()["detail"]

    unknown: Answer = get("/reports", bearer(KeyFormat().generate().reveal()))
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "NOT_FOUND"

    in_url: Answer = get(f"/reports?api_key={keys.reader}", {})
    assert in_url.status_code == 400
    assert in_url.json()["code"] == "KEY_IN_URL"

    me: Answer = get("/me", {"Authorization": f"apiKey {keys.other}"})
    assert me.status_code == 200
    assert me.json()["key_id"] == keys.other_id
    assert get("/health", {}).status_code == 200

    revoke(keys.reader_id)
    revoked: Answer = get("/reports", bearer(keys.reader))
    assert revoked.status_code == 401
    assert revoked.json()["code"] == "REVOKED"
    for answer in (ok, missing, lacking, unknown, in_url, me, revoked):
        assert keys.reader not in str(answer.json())


def test_the_fastapi_example_in_local_mode(local: Mode) -> None:
    fastapi_example(*local)


def test_the_fastapi_example_in_remote_mode(remote: Mode) -> None:
    fastapi_example(*remote)


def test_the_fastapi_example_configured_from_the_environment_local(
    services: Services, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `KEYPLANE_VERIFY_MODE=local uvicorn examples.fastapi_app:app` runs."""
    keys = Keys(local_make(services), tenant)
    monkeypatch.setenv("KEYPLANE_VERIFY_MODE", "local")
    monkeypatch.setenv("KEYPLANE_DATABASE_URL", services.settings.database_url)
    # The app has its own Services: with its cache off it sees our revocation at once
    # (otherwise within KEYPLANE_KEY_CACHE_TTL, as any other Keyplane process).
    monkeypatch.setenv("KEYPLANE_KEY_CACHE_TTL", "0")
    operator = Caller(tenant.organization_id, ("*",), Actor.operator())
    with TestClient(fastapi_app.create_app()) as client:
        check_protocol(
            lambda path, headers: client.get(path, headers=headers),
            keys,
            lambda key_id: services.keys.revoke(operator, key_id),
        )


def test_the_fastapi_example_configured_from_the_environment_remote(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `uvicorn examples.fastapi_app:app` runs with KEYPLANE_URL and KEYPLANE_API_KEY."""
    tenant = server.tenant()
    keys = Keys(server.key, tenant)
    monkeypatch.setenv("KEYPLANE_URL", server.url)
    monkeypatch.setenv("KEYPLANE_API_KEY", keys.verifier)
    with TestClient(fastapi_app.create_app()) as client:
        check_protocol(
            lambda path, headers: client.get(path, headers=headers),
            keys,
            lambda key_id: revoke_and_wait_out_the_cache(server, tenant, key_id),
        )


def test_the_flask_example_configured_from_the_environment_remote(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = server.tenant()
    keys = Keys(server.key, tenant)
    monkeypatch.setenv("KEYPLANE_URL", server.url)
    monkeypatch.setenv("KEYPLANE_API_KEY", keys.verifier)
    app = flask_app.create_app()
    client = app.test_client()
    try:
        check_protocol(
            lambda path, headers: FlaskAnswer(client.get(path, headers=headers)),
            keys,
            lambda key_id: revoke_and_wait_out_the_cache(server, tenant, key_id),
        )
    finally:
        app.extensions["keyplane"].close()


def revoke_and_wait_out_the_cache(server: LiveServer, tenant: Tenant, key_id: str) -> None:
    """A remote verifier remembers a good answer for its cache TTL (1 s by default):
    a revocation takes effect for it once that time has passed."""
    server.revoke(tenant, key_id)
    time.sleep(DEFAULT_CACHE_TTL + 0.05)


def test_the_flask_example_in_local_mode(local: Mode) -> None:
    flask_example(*local)


def test_the_flask_example_in_remote_mode(remote: Mode) -> None:
    flask_example(*remote)


def fastapi_example(verifier: KeyVerifier, keys: Keys, revoke: Any) -> None:
    with TestClient(fastapi_app.create_app(verifier)) as client:
        check_protocol(lambda path, headers: client.get(path, headers=headers), keys, revoke)
        schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
        assert {scheme["type"] for scheme in schemes.values()} == {"http", "apiKey"}
        client.portal.call(verifier.aclose)  # type: ignore[union-attr]  # on the app's loop


def flask_example(verifier: KeyVerifier, keys: Keys, revoke: Any) -> None:
    client = flask_app.create_app(verifier).test_client()

    def get(path: str, headers: dict[str, str]) -> Any:
        return FlaskAnswer(client.get(path, headers=headers))

    check_protocol(get, keys, revoke)


class FlaskAnswer:
    def __init__(self, response: Any) -> None:
        self.status_code = response.status_code
        self.headers = {name.lower(): value for name, value in response.headers.items()}
        self._data = response.get_json(force=True)

    def json(self) -> Any:
        return self._data
