from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.support import Tenant, bearer

MakeKey = Callable[..., dict[str, object]]


@pytest.fixture
def verifier_headers(make_key: MakeKey) -> dict[str, str]:
    return bearer(str(make_key("keys:verify", name="gateway")["key"]))


def verify(client: TestClient, headers: dict[str, str], **body: object) -> dict[str, object]:
    response = client.post("/api/v1/verify", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_valid_key_returns_its_identity_and_metadata(
    client: TestClient, tenant: Tenant, make_key: MakeKey, verifier_headers: dict[str, str]
) -> None:
    held = make_key("reports:read", metadata={"plan": "pro"})
    result = verify(client, verifier_headers, key=held["key"], scopes=["reports:read"])
    assert result["valid"] is True
    assert result["code"] == "VALID"
    assert (result["key_id"], result["project_id"]) == (held["id"], tenant.project_id)
    assert result["scopes"] == ["reports:read"]
    assert result["metadata"] == {"plan": "pro"}


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        pytest.param("revoke", "REVOKED", id="revoked"),
        pytest.param("disable", "DISABLED", id="disabled"),
        pytest.param("roll-now", "EXPIRED", id="expired"),
        pytest.param("scope", "INSUFFICIENT_SCOPE", id="insufficient-scope"),
        pytest.param("allowlist", "FORBIDDEN", id="forbidden-ip"),
        pytest.param("garbage", "NOT_FOUND", id="garbage"),
    ],
)
def test_each_refusal_has_its_code(
    client: TestClient,
    tenant: Tenant,
    make_key: MakeKey,
    verifier_headers: dict[str, str],
    setup: str,
    code: str,
) -> None:
    held = make_key("reports:read", ip_allowlist=["10.0.0.0/8"] if setup == "allowlist" else [])
    url = f"/api/v1/keys/{held['id']}"
    if setup == "revoke":
        client.delete(url, headers=tenant.headers)
    elif setup == "disable":
        client.patch(url, json={"enabled": False}, headers=tenant.headers)
    elif setup == "roll-now":
        client.post(f"{url}/roll", json={"grace_period_seconds": 0}, headers=tenant.headers)
    key = "kp_garbage" if setup == "garbage" else held["key"]
    scopes = ["reports:write"] if setup == "scope" else ["reports:read"]
    result = verify(client, verifier_headers, key=key, scopes=scopes, client_ip="192.0.2.10")
    assert (result["valid"], result["code"]) == (False, code)
    if code != "INSUFFICIENT_SCOPE":
        assert result.get("metadata") is None


def test_allowlist_uses_the_client_ip_given(
    client: TestClient, make_key: MakeKey, verifier_headers: dict[str, str]
) -> None:
    held = make_key(ip_allowlist=["10.0.0.0/8", "2001:db8::/32"])
    assert verify(client, verifier_headers, key=held["key"], client_ip="10.1.2.3")["valid"] is True
    assert (
        verify(client, verifier_headers, key=held["key"], client_ip="2001:db8::1")["valid"] is True
    )
    assert verify(client, verifier_headers, key=held["key"])["code"] == "FORBIDDEN"


def test_another_organizations_key_is_not_found(
    client: TestClient, other_tenant: Tenant, verifier_headers: dict[str, str]
) -> None:
    result = verify(client, verifier_headers, key=other_tenant.key)
    assert result == {
        "valid": False,
        "code": "NOT_FOUND",
        "key_id": None,
        "name": None,
        "project_id": None,
        "organization_id": None,
        "scopes": None,
        "metadata": None,
        "expires_at": None,
        "missing_scopes": None,
        "rate_limit": None,
        "quota": None,
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"key": 1}, id="key-not-string"),
        pytest.param({"key": "x" * 1000}, id="key-too-long"),
        pytest.param({"key": "kp_x", "client_ip": "not-an-ip"}, id="bad-ip"),
        pytest.param({"key": "kp_x", "scopes": "keys:read"}, id="scopes-not-list"),
        pytest.param({"key": "kp_x", "extra": True}, id="unknown-field"),
    ],
)
def test_if_verify_body_is_bad_then_422(
    client: TestClient, verifier_headers: dict[str, str], body: dict[str, object]
) -> None:
    response = client.post("/api/v1/verify", json=body, headers=verifier_headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_verify_records_the_end_clients_details_as_last_used(
    client: TestClient, tenant: Tenant, make_key: MakeKey, verifier_headers: dict[str, str]
) -> None:
    held = make_key()
    verify(
        client, verifier_headers, key=held["key"], client_ip="198.51.100.9", user_agent="shop/3.1"
    )
    shown = client.get(f"/api/v1/keys/{held['id']}", headers=tenant.headers).json()
    assert (shown["last_used_ip"], shown["last_used_user_agent"]) == ("198.51.100.9", "shop/3.1")


def test_verify_refuses_malformed_required_scopes(
    client: TestClient, verifier_headers: dict[str, str], tenant: Tenant
) -> None:
    response = client.post(
        "/api/v1/verify",
        json={"key": tenant.key, "scopes": ["NOT A SCOPE"]},
        headers=verifier_headers,
    )
    assert response.status_code == 422
    assert response.json()["field"] == "scopes"
