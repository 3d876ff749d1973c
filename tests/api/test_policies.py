"""/api/v1/policies: read, change, preview; the lifetime rule through the key routes;
values out of range are a 4xx problem naming the field, and a refused change saves nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.support import Clock, Tenant

DAY = 86400


def test_read_change_and_preview(client: TestClient, tenant: Tenant) -> None:
    got = client.get("/api/v1/policies", headers=tenant.headers)
    assert got.status_code == 200
    assert got.json() == {
        "max_lifetime_seconds": None,
        "default_expiry_seconds": None,
        "stale_days": None,
        "stale_disable": False,
        "stale_revoke_days": None,
    }
    preview = client.post(
        "/api/v1/policies/dry-run", json={"max_lifetime_seconds": 90 * DAY}, headers=tenant.headers
    )
    assert preview.status_code == 200
    groups = {group["action"]: group for group in preview.json()["groups"]}
    assert [key["id"] for key in groups["no_expiry"]["keys"]] == [tenant.key_id]
    assert groups["no_expiry"]["total"] == 1
    assert client.get("/api/v1/policies", headers=tenant.headers).json()["stale_days"] is None
    changed = client.patch(
        "/api/v1/policies",
        json={"max_lifetime_seconds": 90 * DAY, "default_expiry_seconds": 30 * DAY},
        headers=tenant.headers,
    )
    assert changed.status_code == 200
    assert changed.json()["default_expiry_seconds"] == 30 * DAY
    # A second change keeps the fields it leaves out.
    changed = client.patch("/api/v1/policies", json={"stale_days": 60}, headers=tenant.headers)
    assert changed.json()["max_lifetime_seconds"] == 90 * DAY
    assert changed.json()["stale_days"] == 60


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"max_lifetime_seconds": 59}, "max_lifetime_seconds", id="lifetime-short"),
        pytest.param({"max_lifetime_seconds": 10**12}, "max_lifetime_seconds", id="lifetime-long"),
        pytest.param(
            {"max_lifetime_seconds": DAY, "default_expiry_seconds": 2 * DAY},
            "default_expiry_seconds",
            id="default-past-max",
        ),
        pytest.param({"stale_days": 7}, "stale_days", id="stale-7"),
        pytest.param({"stale_days": -1}, "stale_days", id="stale-negative"),
        pytest.param(
            {"stale_days": 30, "stale_disable": True, "stale_revoke_days": 4000},
            "stale_revoke_days",
            id="revoke-long",
        ),
        pytest.param({"stale_disable": True}, "stale_disable", id="disable-without-days"),
    ],
)
def test_out_of_range_is_a_4xx_naming_the_field_and_saves_nothing(
    client: TestClient, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    for path, method in (("/api/v1/policies", "PATCH"), ("/api/v1/policies/dry-run", "POST")):
        response = client.request(method, path, json=body, headers=tenant.headers)
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert field in response.text
    assert client.get("/api/v1/policies", headers=tenant.headers).json()["stale_days"] is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"stale_dayz": 30}, id="unknown-field"),
        pytest.param({"stale_days": "30"}, id="string"),
        pytest.param({"stale_days": 30.5}, id="float"),
        pytest.param({"stale_disable": "yes"}, id="not-a-bool"),
        pytest.param({"stale_days": True}, id="bool-as-int"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_a_malformed_body_is_422(client: TestClient, tenant: Tenant, body: object) -> None:
    response = client.patch("/api/v1/policies", json=body, headers=tenant.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_key_routes_follow_the_lifetime_policy(
    client: TestClient, tenant: Tenant, clock: Clock
) -> None:
    client.patch(
        "/api/v1/policies", json={"max_lifetime_seconds": 30 * DAY}, headers=tenant.headers
    )
    keys = f"/api/v1/projects/{tenant.project_id}/keys"
    refused = client.post(keys, json={"name": "forever"}, headers=tenant.headers)
    assert refused.status_code == 422
    assert "must expire within 30 days" in refused.json()["detail"]
    too_long = (clock.now + timedelta(days=31)).isoformat()
    refused = client.post(
        keys, json={"name": "long", "expires_at": too_long}, headers=tenant.headers
    )
    assert refused.status_code == 422
    assert "at most 30 days" in refused.json()["detail"]
    ok = client.post(keys, json={"name": "ok", "expires_in": "7d"}, headers=tenant.headers)
    assert ok.status_code == 201
    key_id = ok.json()["id"]
    patched = client.patch(
        f"/api/v1/keys/{key_id}", json={"expires_at": None}, headers=tenant.headers
    )
    assert patched.status_code == 422
    patched = client.patch(
        f"/api/v1/keys/{key_id}", json={"expires_at": too_long}, headers=tenant.headers
    )
    assert patched.status_code == 422
    assert client.get(f"/api/v1/keys/{key_id}", headers=tenant.headers).json()["expires_at"]
    # The old management key has no expiry: its successor gets the maximum.
    rolled = client.post(f"/api/v1/keys/{tenant.key_id}/roll", headers=tenant.headers)
    assert rolled.status_code == 201
    client.patch(
        "/api/v1/policies", json={"default_expiry_seconds": 10 * DAY}, headers=tenant.headers
    )
    defaulted = client.post(keys, json={"name": "default"}, headers=tenant.headers)
    assert defaulted.status_code == 201
    assert defaulted.json()["expires_at"] is not None
