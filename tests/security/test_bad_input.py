"""Oversized, malformed and mistyped requests: every one a 4xx problem, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.security.conftest import MakeClient
from tests.support import Tenant


def _chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_if_the_declared_body_is_too_large_then_413_before_the_app_reads_it(
    make_client: MakeClient,
) -> None:
    client, services = make_client(max_body_bytes=2048)
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    body = json.dumps({"name": "x" * 4000}).encode()
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys", content=body, headers=tenant.headers
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "BODY_TOO_LARGE"
    assert response.json()["limit"] == 2048


def test_if_a_streamed_body_grows_past_the_limit_then_413(make_client: MakeClient) -> None:
    client, services = make_client(max_body_bytes=2048)
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    # A generator is sent chunked, without Content-Length: counted as it is read.
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        content=_chunks(10_000),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "BODY_TOO_LARGE"
    # A streamed body under the limit goes through.
    small = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        content=iter([b'{"name": ', b'"streamed"}']),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert small.status_code == 201


def test_if_a_console_form_is_too_large_then_413(make_client: MakeClient) -> None:
    client, _ = make_client(max_body_bytes=1024)
    response = client.post("/console/signin", data={"email": "a@a.test", "password": "p" * 5000})
    assert response.status_code == 413


def test_if_the_headers_are_too_large_then_431(make_client: MakeClient) -> None:
    client, _ = make_client(max_header_bytes=2048)
    # whoami and verify are the hot path's: the limit holds in front of it too.
    for response in (
        client.get("/api/v1/whoami", headers={"X-Filler": "a" * 4000}),
        client.post("/api/v1/verify", json={"key": "kp_x"}, headers={"X-Filler": "a" * 4000}),
        client.get("/api/v1/projects", headers={"X-Filler": "a" * 4000}),
    ):
        assert response.status_code == 431
        assert response.json()["code"] == "HEADERS_TOO_LARGE"
    assert client.get("/healthz", headers={"X-Filler": "a" * 500}).status_code == 200


def test_if_a_hot_request_declares_a_body_over_the_limit_then_413(
    make_client: MakeClient,
) -> None:
    client, services = make_client(max_body_bytes=2048)
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    body = json.dumps({"key": tenant.key, "user_agent": "x" * 4000}).encode()
    response = client.post(
        "/api/v1/verify",
        content=body,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    streamed = client.post(
        "/api/v1/verify",
        content=_chunks(10_000),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413


def test_if_content_length_is_not_a_number_then_400(make_client: MakeClient) -> None:
    client, _ = make_client()
    response = client.post("/api/v1/verify", content=b"{}", headers={"Content-Length": "abc"})
    assert response.status_code == 400


def _endpoints(tenant: Tenant, key_id: str) -> list[tuple[str, str]]:
    return [
        ("POST", "/api/v1/projects"),
        ("POST", f"/api/v1/projects/{tenant.project_id}/keys"),
        ("PATCH", f"/api/v1/keys/{key_id}"),
        ("POST", f"/api/v1/keys/{key_id}/roll"),
        ("POST", "/api/v1/verify"),
        ("PATCH", "/api/v1/policies"),
        ("POST", "/api/v1/policies/dry-run"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{", id="truncated-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="array-not-object"),
        pytest.param(b'"text"', id="string-not-object"),
        pytest.param(b'{"name": 5, "scopes": "keys:read", "key": []}', id="wrong-types"),
        pytest.param(b'{"name": "x", "key": "k", "surprise": true}', id="unknown-field"),
        pytest.param(b"1e999999", id="huge-number"),
        pytest.param(b'{"name": "\\u0000"}', id="nul-byte"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deep-nesting"),
    ],
)
def test_if_a_body_is_malformed_then_every_endpoint_answers_a_4xx_problem(
    client: TestClient, tenant: Tenant, body: bytes
) -> None:
    created = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": "target"},
        headers=tenant.headers,
    ).json()
    for method, path in _endpoints(tenant, created["id"]):
        response = client.request(
            method,
            path,
            content=body,
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert 400 <= response.status_code < 500, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json", (method, path)
        assert tenant.key not in response.text


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        pytest.param("/api/v1/projects", "GET, POST", id="projects"),
        pytest.param("/api/v1/keys/key_0000000000000000", "DELETE, GET, PATCH", id="key"),
        pytest.param("/api/v1/whoami", "GET", id="whoami"),
    ],
)
def test_if_the_method_is_wrong_then_405_lists_every_method_of_the_path(
    client: TestClient, path: str, allowed: str
) -> None:
    response = client.request("OPTIONS", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("value", ["0.5", "1700000000", "-3"])
def test_if_a_time_is_a_number_then_it_is_refused_not_read_as_unix_time(
    client: TestClient, tenant: Tenant, value: str
) -> None:
    response = client.get("/api/v1/audit-events", params={"until": value}, headers=tenant.headers)
    assert response.status_code == 422
    created = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": "x", "expires_at": float(value)},
        headers=tenant.headers,
    )
    assert created.status_code == 422


def test_if_a_body_nests_deeper_than_the_setting_then_400_on_every_surface(
    make_client: MakeClient,
) -> None:
    client, services = make_client(max_json_depth=4)
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    deep = {"name": "x", "metadata": {"a": {"b": {"c": {}}}}}  # 5 deep with the body
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys", json=deep, headers=tenant.headers
    )
    assert response.status_code == 400
    assert response.json()["code"] == "JSON_TOO_DEEP"
    assert response.json()["limit"] == 4
    # Streamed (no Content-Length) and without a content type: scanned all the same.
    streamed = client.post(
        "/v0.4/jobs",
        content=iter([b'{"input": {"a": [[', b"[[]]]}}"]),
        headers=tenant.headers,
    )
    assert streamed.status_code == 400
    assert set(streamed.json()) == {"statusCode", "error", "message"}  # IonQ's shape
    shallow = {"name": "x", "metadata": {"a": {"b": {}}}}
    accepted = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys", json=shallow, headers=tenant.headers
    )
    assert accepted.status_code == 201


def test_if_a_form_has_brackets_then_the_json_scan_leaves_it_alone(make_client: MakeClient) -> None:
    client, _ = make_client(max_json_depth=2)
    response = client.post("/console/signin", data={"email": "[[[[[[", "password": "{{{{{{"})
    assert response.status_code != 400


def test_if_a_json_body_also_claims_to_be_a_form_then_it_is_scanned_all_the_same(
    make_client: MakeClient,
) -> None:
    """The edge leaves forms unscanned, so it must read the content type the routes read
    (the first one), and no route may read a form as JSON: a second ``Content-Type``
    header, or a form type on ``/v0.4`` (which parses bodies itself), skipped the scan."""
    client, services = make_client(max_json_depth=4)
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    deep = json.dumps({"name": "x", "metadata": {"a": {"b": {"c": {}}}}}).encode()
    two_types = [
        *tenant.headers.items(),
        ("Content-Type", "application/json"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys", content=deep, headers=two_types
    )
    assert (response.status_code, response.json()["code"]) == (400, "JSON_TOO_DEEP")
    for form_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        job = client.post(
            "/v0.4/jobs",
            content=b'{"input": {"a": [[[[[]]]]]}}',
            headers={**tenant.headers, "Content-Type": form_type},
        )
        assert job.status_code == 400
        assert "as JSON" in job.json()["message"]
