from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.support import Tenant, bearer


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda key: {"Authorization": f"Bearer {key}"}, id="bearer"),
        pytest.param(lambda key: {"Authorization": f"bearer {key}"}, id="bearer-lowercase"),
        pytest.param(lambda key: {"Authorization": f"apiKey {key}"}, id="apikey"),
        pytest.param(lambda key: {"X-API-Key": key}, id="x-api-key"),
    ],
)
def test_whoami_accepts_each_credential_header(
    client: TestClient, tenant: Tenant, header: Callable[[str], dict[str, str]]
) -> None:
    response = client.get("/api/v1/whoami", headers=header(tenant.key))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == tenant.key_id
    assert body["project_id"] == tenant.project_id
    assert body["organization_id"] == tenant.organization_id
    assert body["scopes"] == ["*"]
    assert body["name"] == "Management key"


def test_if_no_key_then_401_problem_with_challenge(client: TestClient) -> None:
    response = client.get("/api/v1/whoami")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "MISSING_KEY"


def test_if_one_character_changed_then_401(client: TestClient, tenant: Tenant) -> None:
    for position in (3, 10, len(tenant.key) - 1):
        changed = (
            tenant.key[:position]
            + ("a" if tenant.key[position] != "a" else "b")
            + tenant.key[position + 1 :]
        )
        response = client.get("/api/v1/whoami", headers=bearer(changed))
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert changed not in response.text


@pytest.mark.parametrize("name", ["api_key", "key", "token", "apiKey", "access_token", "anything"])
def test_if_key_in_query_string_then_refused_even_with_a_good_header(
    client: TestClient, tenant: Tenant, name: str
) -> None:
    response = client.get("/api/v1/whoami", params={name: tenant.key}, headers=tenant.headers)
    assert response.status_code == 400
    assert response.json()["code"] == "KEY_IN_URL"
    assert tenant.key not in response.text
    assert client.get("/api/v1/whoami", params={name: tenant.key}).status_code == 400


def test_unrelated_query_parameters_are_fine(client: TestClient, tenant: Tenant) -> None:
    response = client.get(
        f"/api/v1/projects/{tenant.project_id}/keys", params={"limit": 1}, headers=tenant.headers
    )
    assert response.status_code == 200


def test_if_key_revoked_then_401_and_get_shows_revoked(
    client: TestClient, tenant: Tenant, make_key: Callable[..., dict[str, object]]
) -> None:
    created = make_key("keys:read")
    key = str(created["key"])
    assert client.get("/api/v1/whoami", headers=bearer(key)).status_code == 200
    response = client.delete(f"/api/v1/keys/{created['id']}", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    refused = client.get("/api/v1/whoami", headers=bearer(key))
    assert refused.status_code == 401
    assert refused.json()["code"] == "REVOKED"
    shown = client.get(f"/api/v1/keys/{created['id']}", headers=tenant.headers).json()
    assert shown["status"] == "revoked"
    assert shown["revoked_at"] is not None
    again = client.delete(f"/api/v1/keys/{created['id']}", headers=tenant.headers)
    assert again.status_code == 200
    assert again.json()["revoked_at"] == shown["revoked_at"]


def test_if_key_disabled_then_401_until_enabled(
    client: TestClient, tenant: Tenant, make_key: Callable[..., dict[str, object]]
) -> None:
    created = make_key()
    key = str(created["key"])
    client.patch(f"/api/v1/keys/{created['id']}", json={"enabled": False}, headers=tenant.headers)
    refused = client.get("/api/v1/whoami", headers=bearer(key))
    assert (refused.status_code, refused.json()["code"]) == (401, "DISABLED")
    client.patch(f"/api/v1/keys/{created['id']}", json={"enabled": True}, headers=tenant.headers)
    assert client.get("/api/v1/whoami", headers=bearer(key)).status_code == 200


def test_if_client_ip_outside_allowlist_then_403(
    client: TestClient, make_key: Callable[..., dict[str, object]]
) -> None:
    outside = make_key(ip_allowlist=["10.0.0.0/8"])
    response = client.get("/api/v1/whoami", headers=bearer(str(outside["key"])))
    assert (response.status_code, response.json()["code"]) == (403, "FORBIDDEN")
    inside = make_key(ip_allowlist=["203.0.113.0/24"])  # the test client's address
    assert client.get("/api/v1/whoami", headers=bearer(str(inside["key"]))).status_code == 200


def test_whoami_records_last_used(
    client: TestClient, tenant: Tenant, make_key: Callable[..., dict[str, object]]
) -> None:
    created = make_key()
    client.get(
        "/api/v1/whoami", headers={**bearer(str(created["key"])), "User-Agent": "notebook/2"}
    )
    shown = client.get(f"/api/v1/keys/{created['id']}", headers=tenant.headers).json()
    assert shown["last_used_ip"] == "203.0.113.7"
    assert shown["last_used_user_agent"] == "notebook/2"
    assert shown["last_used_at"] is not None


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/keys/{key}",
        "/api/v1/projects/{key}",
        "/api/v1/projects/{key}/keys",
        "/api/v1/whoami/{key}",
    ],
)
def test_if_key_in_the_path_then_refused_and_not_echoed(
    client: TestClient, tenant: Tenant, path: str
) -> None:
    response = client.get(path.format(key=tenant.key), headers=tenant.headers)
    assert response.status_code in (400, 404)
    assert tenant.key not in response.text
    if path != "/api/v1/whoami/{key}":  # no such route: 404 before any authentication
        assert response.json()["code"] == "KEY_IN_URL"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda key: {"key": "kp_x", "client_ip": key}, id="key-as-client-ip"),
        pytest.param(lambda key: {"key": "kp_x", "scopes": [key]}, id="key-as-scope"),
    ],
)
def test_error_details_never_quote_a_key_back(
    client: TestClient, tenant: Tenant, body: Callable[[str], dict[str, object]]
) -> None:
    response = client.post("/api/v1/verify", json=body(tenant.key), headers=tenant.headers)
    assert response.status_code == 422
    assert tenant.key not in response.text
    assert f"kp_...{tenant.key[-4:]}" in response.json()["detail"]


def test_key_scope_as_create_input_is_not_quoted_back(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": "x", "ip_allowlist": [tenant.key]},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert tenant.key not in response.text
