from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.support import Tenant


def test_create_list_and_get_projects(client: TestClient, tenant: Tenant) -> None:
    created = client.post("/api/v1/projects", json={"name": "Research"}, headers=tenant.headers)
    assert created.status_code == 201
    project = created.json()
    assert project["organization_id"] == tenant.organization_id
    assert project["created_by"] == f"key:{tenant.key_id}"
    listed = client.get("/api/v1/projects", headers=tenant.headers).json()
    assert [item["name"] for item in listed["items"]] == ["Research", "Default"]
    assert client.get(f"/api/v1/projects/{project['id']}", headers=tenant.headers).json() == project
    duplicate = client.post("/api/v1/projects", json={"name": "Research"}, headers=tenant.headers)
    assert duplicate.status_code == 409
    key = client.post(
        f"/api/v1/projects/{project['id']}/keys", json={"name": "k"}, headers=tenant.headers
    )
    assert key.json()["project_id"] == project["id"]


def test_unknown_project_is_404(client: TestClient, tenant: Tenant) -> None:
    response = client.get("/api/v1/projects/prj_doesnotexist", headers=tenant.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_every_change_is_audited_with_actor_and_ip(client: TestClient, tenant: Tenant) -> None:
    created = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys", json={"name": "k"}, headers=tenant.headers
    ).json()
    client.patch(f"/api/v1/keys/{created['id']}", json={"name": "k2"}, headers=tenant.headers)
    client.patch(f"/api/v1/keys/{created['id']}", json={"enabled": False}, headers=tenant.headers)
    rolled = client.post(f"/api/v1/keys/{created['id']}/roll", headers=tenant.headers).json()
    client.delete(f"/api/v1/keys/{rolled['id']}", headers=tenant.headers)
    client.delete(f"/api/v1/keys/{rolled['id']}", headers=tenant.headers)  # no second event

    events = client.get("/api/v1/audit-events", headers=tenant.headers).json()["items"]
    actions = [event["action"] for event in events]
    assert actions[:6] == [
        "key.revoked",
        "key.rolled",
        "key.disabled",
        "key.updated",
        "key.created",
        "key.created",  # the management key, made by the operator at bootstrap
    ]
    assert events[5]["actor"] == "operator"
    for event in events[:5]:
        assert event["actor"] == f"key:{tenant.key_id}"
        assert event["client_ip"] == "203.0.113.7"
    about_key = client.get(
        "/api/v1/audit-events", params={"key_id": created["id"]}, headers=tenant.headers
    )
    assert [event["action"] for event in about_key.json()["items"]] == [
        "key.rolled",
        "key.disabled",
        "key.updated",
        "key.created",
    ]
    revocations = client.get(
        "/api/v1/audit-events", params={"action": "key.revoked"}, headers=tenant.headers
    )
    assert [event["target_id"] for event in revocations.json()["items"]] == [rolled["id"]]


def test_audit_time_filters(client: TestClient, tenant: Tenant) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (
        client.get("/api/v1/audit-events", params={"since": future}, headers=tenant.headers).json()[
            "items"
        ]
        == []
    )
    assert (
        client.get("/api/v1/audit-events", params={"until": past}, headers=tenant.headers).json()[
            "items"
        ]
        == []
    )
    assert client.get(
        "/api/v1/audit-events", params={"since": past}, headers=tenant.headers
    ).json()["items"]
    for bad in ["yesterday", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]:
        response = client.get("/api/v1/audit-events", params={"since": bad}, headers=tenant.headers)
        assert response.status_code == 422


def test_audit_pagination(client: TestClient, tenant: Tenant) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/audit-events", params=params, headers=tenant.headers).json()
        seen += [event["id"] for event in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4  # organization, member, project, key


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_openapi_documents_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in [
        "/api/v1/whoami",
        "/api/v1/verify",
        "/api/v1/projects/{project_id}/keys",
        "/api/v1/keys/{key_id}/roll",
    ]:
        assert path in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_unknown_routes_and_methods_are_problems(client: TestClient) -> None:
    missing = client.get("/api/v1/nothing-here")
    assert (missing.status_code, missing.headers["content-type"]) == (
        404,
        "application/problem+json",
    )
    wrong = client.put("/api/v1/whoami")
    assert (wrong.status_code, wrong.headers["content-type"]) == (405, "application/problem+json")


def test_openapi_declares_how_to_send_a_key(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["HTTPBearer"].items()
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    assert schema["paths"]["/api/v1/whoami"]["get"]["security"]
