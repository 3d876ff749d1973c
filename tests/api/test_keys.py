from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.support import Tenant, bearer

MakeKey = Callable[..., dict[str, object]]


def test_create_shows_the_value_once(client: TestClient, tenant: Tenant, make_key: MakeKey) -> None:
    created = make_key("keys:read", name="ci", metadata={"team": "data"})
    key = str(created["key"])
    assert key.startswith("kp_")
    assert len(key) == 39
    assert created["hint"] == f"kp_...{key[-4:]}"
    assert created["status"] == "active"
    assert created["created_by"] == f"key:{tenant.key_id}"
    shown = client.get(f"/api/v1/keys/{created['id']}", headers=tenant.headers)
    listed = client.get(f"/api/v1/projects/{tenant.project_id}/keys", headers=tenant.headers)
    audit = client.get("/api/v1/audit-events", headers=tenant.headers)
    for response in (shown, listed, audit):
        assert response.status_code == 200
        assert key not in response.text
    assert "key" not in shown.json()


def test_responses_are_not_cached(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys", json={"name": "x"}, headers=tenant.headers
    )
    assert response.headers["cache-control"] == "no-store"


def test_create_with_expires_in(client: TestClient, tenant: Tenant, make_key: MakeKey) -> None:
    created = make_key(expires_in="30d")
    expires = datetime.fromisoformat(str(created["expires_at"]))
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"name": "x", "expires_in": "30d", "expires_at": "2099-01-01T00:00:00Z"},
            id="both-expiries",
        ),
        pytest.param({"name": "x", "expires_in": "soon"}, id="bad-duration"),
        pytest.param({"name": "x", "expires_at": "2099-01-01T00:00:00"}, id="naive-datetime"),
        pytest.param({"name": "x", "expires_at": "2000-01-01T00:00:00Z"}, id="past-expiry"),
        pytest.param({"name": "x", "unknown": 1}, id="unknown-field"),
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": 5}, id="wrong-type"),
        pytest.param({"name": "x", "scopes": ["NOT A SCOPE"]}, id="bad-scope"),
        pytest.param({"name": "x", "ip_allowlist": ["nope"]}, id="bad-cidr"),
        pytest.param(
            {"name": "x", "expires_at": "9999-12-31T23:59:59-14:00"}, id="expiry-overflows-in-utc"
        ),
        pytest.param({}, id="no-name"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_if_create_body_is_bad_then_422_problem(
    client: TestClient, tenant: Tenant, body: object
) -> None:
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys", json=body, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 422


def test_if_body_is_not_json_then_4xx_problem(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        content=b"{not json",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"


def test_validation_errors_never_echo_the_input(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/api/v1/verify", json={"key": tenant.key, "client_ip": 5}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert tenant.key not in response.text


def test_list_paginates_and_filters(client: TestClient, tenant: Tenant, make_key: MakeKey) -> None:
    made = [str(make_key(name=f"k{i}")["id"]) for i in range(3)]
    client.delete(f"/api/v1/keys/{made[0]}", headers=tenant.headers)
    url = f"/api/v1/projects/{tenant.project_id}/keys"
    first = client.get(url, params={"limit": 2}, headers=tenant.headers).json()
    assert [key["id"] for key in first["items"]] == [made[2], made[1]]
    second = client.get(
        url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=tenant.headers
    ).json()
    assert [key["id"] for key in second["items"]] == [made[0], tenant.key_id]
    assert second["next_cursor"] is None
    revoked = client.get(url, params={"status": "revoked"}, headers=tenant.headers).json()
    assert [key["id"] for key in revoked["items"]] == [made[0]]
    active = client.get(url, params={"status": "active"}, headers=tenant.headers).json()
    assert len(active["items"]) == 3


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": 0}, id="limit-zero"),
        pytest.param({"limit": 10_000}, id="limit-huge"),
        pytest.param({"cursor": "garbage"}, id="bad-cursor"),
        pytest.param({"status": "sleeping"}, id="bad-status"),
    ],
)
def test_if_list_parameters_are_bad_then_422(
    client: TestClient, tenant: Tenant, params: dict[str, object]
) -> None:
    response = client.get(
        f"/api/v1/projects/{tenant.project_id}/keys", params=params, headers=tenant.headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_patch_changes_only_sent_fields_and_null_clears_expiry(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    created = make_key("keys:read", expires_in="1d", metadata={"a": 1})
    url = f"/api/v1/keys/{created['id']}"
    renamed = client.patch(url, json={"name": "renamed"}, headers=tenant.headers).json()
    assert (renamed["name"], renamed["scopes"], renamed["metadata"]) == (
        "renamed",
        ["keys:read"],
        {"a": 1},
    )
    assert renamed["expires_at"] == created["expires_at"]
    cleared = client.patch(url, json={"expires_at": None}, headers=tenant.headers).json()
    assert cleared["expires_at"] is None
    assert client.patch(url, json={"name": None}, headers=tenant.headers).status_code == 422
    client.delete(url, headers=tenant.headers)
    conflict = client.patch(url, json={"name": "again"}, headers=tenant.headers)
    assert (conflict.status_code, conflict.json()["code"]) == (409, "CONFLICT")


def test_roll_returns_a_new_value_and_keeps_the_old_one_for_the_grace(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    old = make_key("keys:read")
    rolled = client.post(f"/api/v1/keys/{old['id']}/roll", headers=tenant.headers)
    assert rolled.status_code == 201
    new = rolled.json()
    assert new["rolled_from_id"] == old["id"]
    assert new["key"] != old["key"]
    assert new["scopes"] == ["keys:read"]
    assert client.get("/api/v1/whoami", headers=bearer(str(old["key"]))).status_code == 200
    assert client.get("/api/v1/whoami", headers=bearer(new["key"])).status_code == 200
    old_now = client.get(f"/api/v1/keys/{old['id']}", headers=tenant.headers).json()
    remaining = datetime.fromisoformat(old_now["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < remaining <= timedelta(hours=24)


def test_roll_with_zero_grace_ends_the_old_key_now(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    old = make_key()
    rolled = client.post(
        f"/api/v1/keys/{old['id']}/roll", json={"grace_period_seconds": 0}, headers=tenant.headers
    )
    assert rolled.status_code == 201
    refused = client.get("/api/v1/whoami", headers=bearer(str(old["key"])))
    assert (refused.status_code, refused.json()["code"]) == (401, "EXPIRED")
    negative = client.post(
        f"/api/v1/keys/{rolled.json()['id']}/roll",
        json={"grace_period_seconds": -1},
        headers=tenant.headers,
    )
    assert negative.status_code == 422


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/api/v1/keys/%00", id="get-key"),
        pytest.param("PATCH", "/api/v1/keys/key_%00", id="patch-key"),
        pytest.param("DELETE", "/api/v1/keys/%00%00", id="revoke-key"),
        pytest.param("POST", "/api/v1/keys/%00/roll", id="roll-key"),
        pytest.param("GET", "/api/v1/projects/%00", id="get-project"),
        pytest.param("GET", "/api/v1/projects/prj_%00/keys", id="list-keys"),
        pytest.param("GET", "/api/v1/keys/" + "x" * 5000, id="long-id"),
    ],
)
def test_ids_that_cannot_exist_are_404_on_every_database(
    client: TestClient, tenant: Tenant, method: str, path: str
) -> None:
    response = client.request(
        method, path, json={"name": "x"} if method == "PATCH" else None, headers=tenant.headers
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("name", ["action", "key_id", "actor"])
def test_audit_filters_with_control_characters_are_422(
    client: TestClient, tenant: Tenant, name: str
) -> None:
    response = client.get("/api/v1/audit-events", params={name: "a\x00b"}, headers=tenant.headers)
    assert response.status_code == 422


def test_roll_refuses_an_expired_or_already_rolled_key(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    old = make_key()
    assert client.post(f"/api/v1/keys/{old['id']}/roll", headers=tenant.headers).status_code == 201
    again = client.post(f"/api/v1/keys/{old['id']}/roll", headers=tenant.headers)
    assert again.status_code == 409
    assert "already rolled" in again.json()["detail"]
    ended = make_key()
    rolled = client.post(
        f"/api/v1/keys/{ended['id']}/roll", json={"grace_period_seconds": 0}, headers=tenant.headers
    )
    expired = client.post(f"/api/v1/keys/{rolled.json()['id']}/roll", headers=tenant.headers)
    assert expired.status_code == 201  # the successor is live
    refused = client.post(f"/api/v1/keys/{ended['id']}/roll", headers=tenant.headers)
    assert refused.status_code == 409


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("soon", "not a duration", id="not-a-duration"),
        pytest.param("0s", "longer than zero", id="zero"),
    ],
)
def test_a_bad_expires_in_is_reported_on_that_field(
    client: TestClient, tenant: Tenant, value: str, message: str
) -> None:
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": "x", "expires_in": value},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert response.json()["field"] == "expires_in"
    assert message in response.json()["detail"]


def test_invalid_json_is_a_400_that_says_so(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/api/v1/projects",
        content=b"{bad",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"
