"""The ASGI and WSGI middleware, the FastAPI dependency and the verifiers themselves."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Annotated, Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask, g
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from werkzeug.test import Client as WSGIClient

from keyplane.core.grant import Allowance, Decision, GrantCode, KeyState
from keyplane.core.keys import KeyFormat
from keyplane.integrations import (
    KeyIdentity,
    KeyplaneMiddleware,
    KeyplaneWSGIMiddleware,
    LocalVerifier,
    Outcome,
    RemoteVerifier,
)
from keyplane.integrations import fastapi as fastapi_integration
from keyplane.integrations import flask as flask_integration
from keyplane.integrations.guard import problem
from keyplane.integrations.verifiers import _from_decision
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from tests.live import LiveServer
from tests.support import Tenant, bearer


def make_key(services: Services, tenant: Tenant, *scopes: str) -> tuple[str, str]:
    caller = Caller(tenant.organization_id, ("*",), Actor.operator())
    created = services.keys.create(caller, tenant.project_id, name="caller", scopes=scopes)
    return created.record.id, created.secret.reveal()


async def whoami(request: Request) -> JSONResponse:
    identity: KeyIdentity = request.state.keyplane
    return JSONResponse({"key_id": identity.key_id, "scopes": list(identity.scopes)})


def starlette_app(verifier: Any, **options: Any) -> Any:
    app = Starlette(routes=[Route("/who", whoami), Route("/health", whoami)])
    return KeyplaneMiddleware(app, verifier, **options)


def test_asgi_middleware_puts_the_identity_on_request_state(
    services: Services, tenant: Tenant
) -> None:
    key_id, key = make_key(services, tenant, "jobs:run")
    app = starlette_app(LocalVerifier(services), scopes=["jobs:run"], exclude_paths=["/nope/"])
    with TestClient(app) as client:
        answer = client.get("/who", headers=bearer(key))
        assert answer.json() == {"key_id": key_id, "scopes": ["jobs:run"]}
        assert client.get("/who").status_code == 401


def test_asgi_middleware_excluded_paths_need_no_key(services: Services, tenant: Tenant) -> None:
    app = starlette_app(LocalVerifier(services), exclude_paths=["/health"])

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app.app.routes[1] = Route("/health", health)
    with TestClient(app) as client:
        assert client.get("/health").json() == {"ok": True}


def test_a_websocket_without_a_good_key_is_closed_before_it_opens(
    services: Services, tenant: Tenant
) -> None:
    _, key = make_key(services, tenant)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.state.keyplane.key_id)
        await websocket.close()

    app = KeyplaneMiddleware(
        Starlette(routes=[WebSocketRoute("/ws", echo)]), LocalVerifier(services)
    )
    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws"):
            pass
        assert closed.value.code == 1008
        with client.websocket_connect("/ws", headers=bearer(key)) as socket:
            assert socket.receive_text().startswith("key_")


def test_local_mode_can_be_limited_to_one_organization(
    services: Services, tenant: Tenant, other_tenant: Tenant
) -> None:
    _, key = make_key(services, other_tenant, "jobs:run")
    limited = LocalVerifier(services, organization_id=tenant.organization_id)
    with TestClient(starlette_app(limited)) as client:
        assert client.get("/who", headers=bearer(key)).json()["code"] == "NOT_FOUND"
    with TestClient(starlette_app(LocalVerifier(services))) as client:
        assert client.get("/who", headers=bearer(key)).status_code == 200


def test_the_dependency_after_the_middleware_only_rechecks_scopes(
    services: Services, tenant: Tenant
) -> None:
    _, key = make_key(services, tenant, "jobs:run")
    app = FastAPI()
    fastapi_integration.setup(app, LocalVerifier(services))

    @app.get("/admin")
    def admin(
        identity: Annotated[KeyIdentity, fastapi_integration.require_key(["jobs:admin"])],
    ) -> str:
        return identity.key_id

    protected = KeyplaneMiddleware(app, LocalVerifier(services))
    with TestClient(protected) as client:
        denied = client.get("/admin", headers=bearer(key))
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert "jobs:admin" in denied.json()["detail"]


def test_without_setup_fastapi_still_answers_the_right_status(
    services: Services, tenant: Tenant
) -> None:
    app = FastAPI()
    any_key = fastapi_integration.require_key(verifier=LocalVerifier(services))

    @app.get("/x")
    def x(identity: KeyIdentity = any_key) -> str:
        return identity.key_id

    with TestClient(app) as client:
        answer = client.get("/x")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="keyplane"'


def test_wsgi_middleware_puts_the_identity_in_the_environ(
    services: Services, tenant: Tenant
) -> None:
    key_id, key = make_key(services, tenant, "jobs:run")
    seen: list[Any] = []

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["keyplane"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = WSGIClient(
        KeyplaneWSGIMiddleware(wsgi_app, LocalVerifier(services), scopes=["jobs:run"])
    )
    ok = client.get("/", headers={"X-API-Key": key})
    assert ok.status_code == 200
    assert seen[0].key_id == key_id
    denied = client.get("/")
    assert denied.status_code == 401
    assert denied.headers["Content-Type"] == "application/problem+json"
    assert denied.json["code"] == "MISSING_KEY"


def test_flask_decorator_after_the_wsgi_middleware(services: Services, tenant: Tenant) -> None:
    _, key = make_key(services, tenant, "jobs:run")
    app = Flask(__name__)

    @app.get("/run")
    @flask_integration.require_key(["jobs:run"])
    def run() -> dict[str, str]:
        return {"key": g.keyplane.key_id}

    @app.get("/admin")
    @flask_integration.require_key(["jobs:admin"])
    def admin() -> dict[str, str]:
        return {"key": g.keyplane.key_id}

    app.wsgi_app = KeyplaneWSGIMiddleware(app.wsgi_app, LocalVerifier(services))  # type: ignore[method-assign]
    client = app.test_client()
    assert client.get("/run", headers=bearer(key)).status_code == 200
    denied = client.get("/admin", headers=bearer(key))
    assert denied.status_code == 403
    assert denied.json is not None
    assert denied.json["code"] == "INSUFFICIENT_SCOPE"


@pytest.mark.parametrize(
    ("code", "retry_after", "status", "header"),
    [
        pytest.param(GrantCode.RATE_LIMITED, 2.5, 429, "3", id="rate-limited"),
        pytest.param(GrantCode.USAGE_EXCEEDED, 30.2, 429, "31", id="usage-exceeded"),
        pytest.param(GrantCode.USAGE_EXCEEDED, None, 429, None, id="quota-never-refills"),
        pytest.param("UNAVAILABLE", None, 503, "1", id="unavailable"),
    ],
)
def test_limits_and_outages_answer_with_retry_after(
    code: str, retry_after: float | None, status: int, header: str | None
) -> None:
    answer = problem(Outcome(code, retry_after=retry_after))
    assert answer.status == status
    assert answer.headers.get("Retry-After") == header


def test_a_rate_limited_decision_becomes_a_429_outcome() -> None:
    state = KeyState("key_A", "n", "kp_...x", "prj_A", "org_A", (), True, None, None)
    reset_at = time.time() + 20
    outcome = _from_decision(
        Decision(GrantCode.RATE_LIMITED, state, rate_limit=Allowance(5, 0, reset_at))
    )
    assert outcome.code == GrantCode.RATE_LIMITED
    assert not outcome.granted
    assert outcome.retry_after is not None
    assert 18 < outcome.retry_after <= 20
    assert problem(outcome).status == 429
    assert problem(outcome).headers["Retry-After"] == "20"


class TestRemoteVerifier:
    @pytest.fixture
    def setup(self, server: LiveServer) -> tuple[LiveServer, Tenant, str]:
        tenant = server.tenant()
        _, verifier_key = server.key(tenant, "keys:verify")
        return server, tenant, verifier_key

    def test_good_answers_are_cached_by_hash_and_expire(
        self, setup: tuple[LiveServer, Tenant, str]
    ) -> None:
        server, tenant, verifier_key = setup
        key_id, key = server.key(tenant, "jobs:run")
        verifier = RemoteVerifier(verifier_key, base_url=server.url, cache_ttl=60)
        try:
            first = verifier.check(key, scopes=["jobs:run"], client_ip=None, user_agent=None)
            assert first.granted
            server.revoke(tenant, key_id)
            cached = verifier.check(key, scopes=["jobs:run"], client_ip=None, user_agent=None)
            assert cached is first  # within the TTL the answer is remembered
            assert all(key not in repr(entry) for entry in verifier._cache)
            assert next(iter(verifier._cache))[0] == hashlib.sha256(key.encode()).hexdigest()
            verifier.cache_ttl = 0
            verifier._cache.clear()
            again = verifier.check(key, scopes=["jobs:run"], client_ip=None, user_agent=None)
            assert again.code == "REVOKED"
        finally:
            verifier.close()

    def test_a_garbage_key_is_refused_without_a_request(
        self, setup: tuple[LiveServer, Tenant, str], caplog: pytest.LogCaptureFixture
    ) -> None:
        _, _, verifier_key = setup
        verifier = RemoteVerifier(verifier_key, base_url="http://127.0.0.1:9")
        try:
            outcome = verifier.check("kp_nope", scopes=(), client_ip=None, user_agent=None)
        finally:
            verifier.close()
        assert outcome.code == "NOT_FOUND"

    def test_an_unreachable_server_means_503_and_a_log_line_without_keys(
        self, setup: tuple[LiveServer, Tenant, str], caplog: pytest.LogCaptureFixture
    ) -> None:
        _, _, verifier_key = setup
        caller_key = KeyFormat().generate().reveal()
        verifier = RemoteVerifier(verifier_key, base_url="http://127.0.0.1:9", max_retries=0)
        caplog.set_level(logging.ERROR, "keyplane.integrations")
        try:
            outcome = verifier.check(caller_key, scopes=(), client_ip=None, user_agent=None)
        finally:
            verifier.close()
        assert outcome.code == "UNAVAILABLE"
        assert problem(outcome).status == 503
        logged = caplog.text
        assert "cannot verify keys through Keyplane" in logged
        assert caller_key not in logged
        assert verifier_key not in logged

    def test_a_verifier_key_without_keys_verify_is_an_outage_not_a_401(
        self, setup: tuple[LiveServer, Tenant, str]
    ) -> None:
        server, tenant, _ = setup
        _, weak = server.key(tenant, "jobs:run")
        _, caller = server.key(tenant, "jobs:run")
        verifier = RemoteVerifier(weak, base_url=server.url)
        try:
            outcome = verifier.check(caller, scopes=(), client_ip=None, user_agent=None)
        finally:
            verifier.close()
        assert outcome.code == "UNAVAILABLE"
