"""The pure-ASGI hot path answers exactly as the FastAPI routes do: status, headers, body.

``fast`` is the served app (the ``client`` fixture: what ``keyplane serve`` runs).
``plain`` is NOT served anywhere: it is the served app's FastAPI part alone
(``FastAPI.__call__`` of a served app, without the access log, size limits and
hot path in front), built here only to compare the hot path with the routes
it stands in for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from starlette.types import Receive, Scope, Send

from keyplane.api.hotpath import HotPath
from keyplane.app import KeyplaneApp
from keyplane.http.access_log import AccessLogMiddleware
from keyplane.http.size_limits import SizeLimitMiddleware
from keyplane.service.services import Services
from tests.conftest import served_app
from tests.support import Clock, Tenant, bearer

MakeKey = Callable[..., dict[str, object]]


class FastAPIOnly:
    """NOT what is served: a served app's FastAPI part, without the layers in front."""

    def __init__(self, app: KeyplaneApp) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(self.app, scope, receive, send)


@pytest.fixture(scope="module")
def plain_app() -> FastAPIOnly:
    return FastAPIOnly(served_app())


@pytest.fixture
def plain(plain_app: FastAPIOnly, services: Services) -> Iterator[TestClient]:
    plain_app.state.services = services
    try:
        with TestClient(plain_app, client=("203.0.113.7", 50000)) as test_client:
            yield test_client
    finally:
        plain_app.state.services = None


@pytest.fixture
def fast(client: TestClient) -> TestClient:
    """The served app (``client``): the hot path in its place in the one assembly."""
    return client


def same(fast: Response, slow: Response) -> None:
    assert fast.status_code == slow.status_code
    assert fast.headers.raw == slow.headers.raw
    assert fast.content == slow.content


def test_the_served_stack_is_access_log_then_size_limits_then_hot_path_then_fastapi(
    app: KeyplaneApp,
) -> None:
    stack = app.build_serving_stack()
    assert isinstance(stack, AccessLogMiddleware)
    limits = stack.app
    assert isinstance(limits, SizeLimitMiddleware)
    hot = limits.app
    assert isinstance(hot, HotPath)
    # Behind the hot path: all of FastAPI (its entry, then its own middleware stack).
    assert getattr(hot.app, "__func__", None) is FastAPI.__call__
    assert getattr(hot.app, "__self__", None) is app
    paths = app.openapi()["paths"]
    assert "get" in paths["/api/v1/whoami"]
    assert "post" in paths["/api/v1/verify"]


def test_whoami_answers_are_identical(
    client: TestClient,
    fast: TestClient,
    plain: TestClient,
    tenant: Tenant,
    make_key: MakeKey,
    clock: Clock,
) -> None:
    revoked = make_key(name="revoked")
    client.delete(f"/api/v1/keys/{revoked['id']}", headers=tenant.headers)
    disabled = make_key(name="disabled", enabled=False)
    walled = make_key(name="walled", ip_allowlist=["10.0.0.0/8"])
    expiring = make_key(name="expiring", expires_in="1h")
    key = tenant.key
    unknown = "kp_" + "A" * 36
    cases: list[dict[str, Any]] = [
        {"headers": bearer(key)},
        {"headers": {"Authorization": f"apiKey {key}"}},
        {"headers": {"X-API-Key": key, "User-Agent": "probe/1"}},
        {"headers": {"X-API-Key": key, "X-Forwarded-For": "198.51.100.1"}},
        {"headers": {}},
        {"headers": bearer("not-a-key")},
        {"headers": bearer(unknown)},
        {"headers": bearer(key[:-1] + ("A" if key[-1] != "A" else "B"))},
        {"headers": bearer(str(revoked["key"]))},
        {"headers": bearer(str(disabled["key"]))},
        {"headers": bearer(str(walled["key"]))},
        {"headers": bearer(key), "params": {"api_key": "x"}},
        {"headers": bearer(key), "params": {"q": key}},
        {"headers": bearer(key), "params": {"page": "2"}},
        {"headers": {"Authorization": "Basic abc"}},
    ]
    for case in cases:
        same(fast.get("/api/v1/whoami", **case), plain.get("/api/v1/whoami", **case))
    clock.advance(timedelta(hours=2))
    expired = {"headers": bearer(str(expiring["key"]))}
    same(fast.get("/api/v1/whoami", **expired), plain.get("/api/v1/whoami", **expired))
    for method in ("HEAD", "PUT", "DELETE"):
        same(
            fast.request(method, "/api/v1/whoami", headers=bearer(key)),
            plain.request(method, "/api/v1/whoami", headers=bearer(key)),
        )


def test_rate_limit_headers_and_429_are_identical(
    fast: TestClient, plain: TestClient, make_key: MakeKey
) -> None:
    fast_key = make_key(name="fast", rate_limit={"limit": 2, "window_seconds": 3600})
    slow_key = make_key(name="slow", rate_limit={"limit": 2, "window_seconds": 3600})
    for _ in range(3):
        quick = fast.get("/api/v1/whoami", headers=bearer(str(fast_key["key"])))
        slow = plain.get("/api/v1/whoami", headers=bearer(str(slow_key["key"])))
        assert quick.status_code == slow.status_code
        assert [name for name, _ in quick.headers.raw] == [name for name, _ in slow.headers.raw]
        assert quick.headers["ratelimit-remaining"] == slow.headers["ratelimit-remaining"]
        if quick.status_code == 429:
            assert quick.content == slow.content


def test_verify_answers_are_identical(
    fast: TestClient,
    plain: TestClient,
    tenant: Tenant,
    other_tenant: Tenant,
    make_key: MakeKey,
) -> None:
    gateway = bearer(str(make_key("keys:verify", name="gateway")["key"]))
    weak = bearer(str(make_key("keys:read", name="weak")["key"]))
    held = make_key("reports:read", name="held", metadata={"plan": "pro"})
    key = str(held["key"])
    json_type = {"Content-Type": "application/json"}
    cases: list[dict[str, Any]] = [
        {"headers": gateway, "json": {"key": key}},
        {"headers": gateway, "json": {"key": key, "scopes": ["reports:read"]}},
        {"headers": gateway, "json": {"key": key, "scopes": ["admin"]}},
        {"headers": gateway, "json": {"key": key, "client_ip": "192.0.2.1", "user_agent": "x"}},
        {"headers": gateway, "json": {"key": other_tenant.key}},
        {"headers": gateway, "json": {"key": "kp_nope"}},
        {"headers": gateway, "json": {"key": key, "client_ip": "not-an-ip"}},
        {"headers": gateway, "json": {"key": key, "scopes": ["Bad Scope!"]}},
        {"headers": gateway, "json": {"key": key, "extra": 1}},
        {"headers": gateway, "json": {}},
        {"headers": gateway, "json": [key]},
        {"headers": {**gateway, **json_type}, "content": b"{not json"},
        {"headers": {**gateway, **json_type}, "content": b""},
        {"headers": gateway, "content": b'{"key": "x"}'},  # no content type
        {"headers": {**gateway, "Content-Type": "text/plain"}, "content": b'{"key": "x"}'},
        {
            "headers": {**gateway, "Content-Type": "application/json; charset=utf-8"},
            "content": b'{"key": "' + key.encode() + b'"}',
        },
        {"headers": weak, "json": {"key": key}},
        {"headers": {}, "json": {"key": key}},
        {"headers": bearer("kp_" + "B" * 36), "json": {"key": key}},
        {"headers": {**gateway, **json_type}, "content": b"{not json", "params": {"token": "1"}},
        {"headers": gateway, "json": {"key": key}, "params": {"api_key": "1"}},
    ]
    for case in cases:
        same(fast.post("/api/v1/verify", **case), plain.post("/api/v1/verify", **case))
    same(fast.get("/api/v1/verify", headers=gateway), plain.get("/api/v1/verify", headers=gateway))
    big = {"key": key, "user_agent": "x" * 512, "scopes": ["a"] * 64}
    oversized = b'{"key": "' + key.encode() + b'", "pad": "' + b"x" * 70_000 + b'"}'
    for body in (big, None):
        case = {"headers": gateway, **({"json": body} if body else {"content": oversized})}
        if body is None:
            case["headers"] = {**gateway, **json_type}
        same(fast.post("/api/v1/verify", **case), plain.post("/api/v1/verify", **case))


def test_other_routes_are_untouched(client: TestClient, tenant: Tenant) -> None:
    assert client.get("/healthz").status_code == 200
    keys = client.get(f"/api/v1/projects/{tenant.project_id}/keys", headers=tenant.headers)
    assert keys.status_code == 200


def test_the_common_cases_never_reach_fastapi(services: Services, tenant: Tenant) -> None:
    """With an app behind it that fails, the hot path still answers whoami and verify."""

    async def no_app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"{scope['method']} {scope['path']} reached the app")

    class Owner:
        class state:  # stands in for app.state
            pass

    Owner.state.services = services  # type: ignore[attr-defined]
    hot = HotPath(no_app)

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        await hot({**scope, "app": Owner}, receive, send)

    test_client = TestClient(outer)  # no lifespan: the app behind must never run
    assert test_client.get("/api/v1/whoami", headers=tenant.headers).status_code == 200
    assert test_client.get("/api/v1/whoami").status_code == 401
    answer = test_client.post("/api/v1/verify", json={"key": tenant.key}, headers=tenant.headers)
    assert answer.json()["valid"] is True
    with pytest.raises(AssertionError, match="reached the app"):
        test_client.post("/api/v1/verify", content=b"{", headers=tenant.headers)


def test_the_served_app_logs_each_hot_request_once_and_answers_500_like_starlette(
    app: KeyplaneApp,
    services: Services,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app.state.services = services
    try:
        served = TestClient(app, raise_server_exceptions=False)
        with caplog.at_level("INFO", logger="keyplane.access"):
            assert served.get("/api/v1/whoami", headers=tenant.headers).status_code == 200
            assert served.post("/api/v1/verify", content=b"{", headers=tenant.headers).status_code
        lines = [r.getMessage() for r in caplog.records if r.name == "keyplane.access"]
        assert len(lines) == 2  # the fallback to FastAPI is logged once, not twice
        assert '"GET /api/v1/whoami" 200' in lines[0]
        assert '"POST /api/v1/verify" 4' in lines[1]
        assert tenant.key not in "".join(lines)

        async def broken(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("the database went away")

        monkeypatch.setattr(services.verifier, "verify_async", broken)
        answer = served.get("/api/v1/whoami", headers=tenant.headers)
        assert answer.status_code == 500
        assert answer.json()["code"] == "INTERNAL_ERROR"
        assert answer.headers["content-type"] == "application/problem+json"
    finally:
        app.state.services = None
