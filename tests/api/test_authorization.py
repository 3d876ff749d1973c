"""Scopes and organizations: who may call what."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.support import Tenant, bearer

MakeKey = Callable[..., dict[str, object]]

# (method, path template, json body, scope it needs)
ENDPOINTS = [
    ("GET", "/api/v1/projects", None, "projects:read"),
    ("POST", "/api/v1/projects", {"name": "new"}, "projects:write"),
    ("GET", "/api/v1/projects/{project_id}", None, "projects:read"),
    ("GET", "/api/v1/projects/{project_id}/keys", None, "keys:read"),
    ("POST", "/api/v1/projects/{project_id}/keys", {"name": "k"}, "keys:write"),
    ("GET", "/api/v1/keys/{key_id}", None, "keys:read"),
    ("PATCH", "/api/v1/keys/{key_id}", {"name": "n"}, "keys:write"),
    ("POST", "/api/v1/keys/{key_id}/roll", None, "keys:write"),
    ("DELETE", "/api/v1/keys/{key_id}", None, "keys:write"),
    ("POST", "/api/v1/verify", {"key": "kp_x"}, "keys:verify"),
    ("GET", "/api/v1/audit-events", None, "audit:read"),
]
IDS = [f"{method} {path}" for method, path, _, _ in ENDPOINTS]


def call(
    client: TestClient,
    tenant: Tenant,
    key: str,
    endpoint: tuple[str, str, object, str],
    target: str,
):  # type: ignore[no-untyped-def]
    method, path, body, _ = endpoint
    url = path.format(project_id=tenant.project_id, key_id=target)
    return client.request(method, url, json=body, headers=bearer(key))


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_if_key_holds_the_scope_then_allowed(
    client: TestClient, tenant: Tenant, make_key: MakeKey, endpoint: tuple[str, str, object, str]
) -> None:
    holder = make_key(endpoint[3])
    target = make_key()
    response = call(client, tenant, str(holder["key"]), endpoint, str(target["id"]))
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_if_key_lacks_the_scope_then_403(
    client: TestClient, tenant: Tenant, make_key: MakeKey, endpoint: tuple[str, str, object, str]
) -> None:
    others = [scope for _, _, _, scope in ENDPOINTS if scope != endpoint[3]]
    holder = make_key(*others)
    target = make_key()
    response = call(client, tenant, str(holder["key"]), endpoint, str(target["id"]))
    assert response.status_code == 403
    assert response.json()["code"] == "INSUFFICIENT_SCOPE"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_if_no_key_then_401(
    client: TestClient, tenant: Tenant, endpoint: tuple[str, str, object, str]
) -> None:
    method, path, body, _ = endpoint
    url = path.format(project_id=tenant.project_id, key_id=tenant.key_id)
    response = client.request(method, url, json=body)
    assert response.status_code == 401
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize(
    "endpoint",
    [e for e in ENDPOINTS if "{" in e[1]],
    ids=[i for e, i in zip(ENDPOINTS, IDS, strict=True) if "{" in e[1]],
)
def test_if_object_in_another_organization_then_404(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, endpoint: tuple[str, str, object, str]
) -> None:
    response = call(client, tenant, other_tenant.key, endpoint, tenant.key_id)
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
    # and nothing changed
    assert client.get("/api/v1/whoami", headers=tenant.headers).status_code == 200


def test_lists_show_only_the_callers_organization(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    projects = client.get("/api/v1/projects", headers=other_tenant.headers).json()["items"]
    assert [project["id"] for project in projects] == [other_tenant.project_id]
    events = client.get("/api/v1/audit-events", headers=other_tenant.headers).json()["items"]
    assert {event["organization_id"] for event in events} == {other_tenant.organization_id}


def test_wildcard_scope_grants_its_resource(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    holder = make_key("keys:*")
    assert (
        client.get(
            f"/api/v1/projects/{tenant.project_id}/keys", headers=bearer(str(holder["key"]))
        ).status_code
        == 200
    )
    assert client.get("/api/v1/projects", headers=bearer(str(holder["key"]))).status_code == 403


def test_a_key_cannot_create_a_key_with_more_scopes_than_it_holds(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    writer = make_key("keys:write")
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": "escalate", "scopes": ["*"]},
        headers=bearer(str(writer["key"])),
    )
    assert response.status_code == 403
