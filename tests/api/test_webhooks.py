"""The webhook routes of /api/v1: answers, the secret shown once, and RFC 9457
problems for bad URLs, unknown event types and other organizations' objects."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keyplane.config import Settings
from keyplane.service.services import Services
from tests.support import Tenant
from tests.webhook_receiver import Receiver, running_receiver


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        outbound_allow_networks=(ipaddress.IPv4Network("127.0.0.1/32"),),
        webhook_workers=0,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def create(client: TestClient, tenant: Tenant, receiver: Receiver, **body: object) -> dict:
    answer = client.post(
        "/api/v1/webhooks", json={"url": receiver.url, **body}, headers=tenant.headers
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    receiver.secrets.append(created["secret"])
    return created


def test_create_list_get_update_rotate_and_delete(
    client: TestClient, tenant: Tenant, receiver: Receiver
) -> None:
    created = create(
        client, tenant, receiver, description="billing", event_types=["key.*", "key.revoked"]
    )
    endpoint = created["endpoint"]
    assert created["secret"].startswith("whsec_")
    assert endpoint["event_types"] == ["key.*", "key.revoked"]
    assert endpoint["enabled"] is True
    listed = client.get("/api/v1/webhooks", headers=tenant.headers).json()
    assert [item["id"] for item in listed["items"]] == [endpoint["id"]]
    got = client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant.headers)
    assert got.status_code == 200
    assert created["secret"] not in got.text
    assert "secret" not in got.json()
    changed = client.patch(
        f"/api/v1/webhooks/{endpoint['id']}",
        json={"enabled": False, "description": "off"},
        headers=tenant.headers,
    ).json()
    assert (changed["enabled"], changed["disabled_reason"]) == (False, "user")
    rotated = client.post(
        f"/api/v1/webhooks/{endpoint['id']}/rotate-secret",
        json={"overlap_seconds": 0},
        headers=tenant.headers,
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["endpoint"]["previous_secret_expires_at"] is None
    deleted = client.delete(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (
        client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant.headers).status_code == 404
    )


def test_test_event_delivery_log_and_replay(
    client: TestClient, services: Services, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = create(client, tenant, receiver)["endpoint"]
    sent = client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=tenant.headers)
    assert sent.status_code == 202
    assert sent.json()["event_type"] == "webhook.test"
    services.deliveries.run_once()
    (got,) = receiver.wait_for(1)
    assert got.verified_by == [0]
    log = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=tenant.headers).json()
    (delivery,) = log["items"]
    assert (delivery["status"], delivery["last_status_code"]) == ("delivered", 204)
    assert delivery["last_latency_ms"] is not None
    detail = client.get(f"/api/v1/webhook-deliveries/{delivery['id']}", headers=tenant.headers)
    assert detail.json()["attempts"][0]["status_code"] == 204
    assert detail.json()["payload"]["type"] == "webhook.test"
    replayed = client.post(
        f"/api/v1/webhook-deliveries/{delivery['id']}/replay", headers=tenant.headers
    )
    assert replayed.status_code == 202
    assert replayed.json()["replay"] == 1
    services.deliveries.run_once()
    assert receiver.wait_for(2)[1].headers["webhook-id"] == got.headers["webhook-id"]
    filtered = client.get(
        f"/api/v1/webhooks/{endpoint['id']}/deliveries?status=pending", headers=tenant.headers
    ).json()
    assert filtered["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"url": "http://10.0.0.1/hook"}, "url", id="private"),
        pytest.param({"url": "http://169.254.169.254/"}, "url", id="metadata"),
        pytest.param({"url": "http://2130706433/"}, "url", id="decimal-ipv4"),
        pytest.param({"url": "http://evil@127.0.0.1/"}, "url", id="userinfo"),
        pytest.param({"url": "javascript:alert(1)"}, "url", id="scheme"),
        pytest.param({"url": "http://nowhere.invalid/"}, "url", id="does-not-resolve"),
        pytest.param(
            {"url": "http://127.0.0.1/", "event_types": ["key.nope"]}, "event_types", id="event"
        ),
        pytest.param(
            {"url": "http://127.0.0.1/", "event_types": "key.revoked"}, None, id="not-a-list"
        ),
        pytest.param(
            {"url": "http://127.0.0.1/", "description": "a\x00b"}, "description", id="nul"
        ),
    ],
)
def test_bad_input_is_a_422_problem_and_creates_nothing(
    client: TestClient, tenant: Tenant, body: dict, field: str | None
) -> None:
    answer = client.post("/api/v1/webhooks", json=body, headers=tenant.headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert answer.json()["field"] == field
    assert client.get("/api/v1/webhooks", headers=tenant.headers).json()["items"] == []


def test_another_organizations_endpoint_and_delivery_are_not_found(
    client: TestClient,
    services: Services,
    tenant: Tenant,
    other_tenant: Tenant,
    receiver: Receiver,
) -> None:
    theirs = create(client, other_tenant, receiver)["endpoint"]
    sent = client.post(f"/api/v1/webhooks/{theirs['id']}/test", headers=other_tenant.headers)
    delivery_id = sent.json()["id"]
    for method, path in [
        ("GET", f"/api/v1/webhooks/{theirs['id']}"),
        ("PATCH", f"/api/v1/webhooks/{theirs['id']}"),
        ("DELETE", f"/api/v1/webhooks/{theirs['id']}"),
        ("POST", f"/api/v1/webhooks/{theirs['id']}/rotate-secret"),
        ("POST", f"/api/v1/webhooks/{theirs['id']}/test"),
        ("GET", f"/api/v1/webhooks/{theirs['id']}/deliveries"),
        ("GET", f"/api/v1/webhook-deliveries/{delivery_id}"),
        ("POST", f"/api/v1/webhook-deliveries/{delivery_id}/replay"),
        ("GET", "/api/v1/webhooks/whe_nothing"),
        ("GET", "/api/v1/webhook-deliveries/not-an-id"),
    ]:
        kwargs = {"json": {}} if method == "PATCH" else {}
        answer = client.request(method, path, headers=tenant.headers, **kwargs)
        assert answer.status_code == 404, (method, path, answer.text)
    assert (
        client.get(f"/api/v1/webhooks/{theirs['id']}", headers=other_tenant.headers).status_code
        == 200
    )


def test_a_key_without_the_webhook_scopes_is_refused(
    client: TestClient, services: Services, tenant: Tenant
) -> None:
    created = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": "reader", "scopes": ["webhooks:read"]},
        headers=tenant.headers,
    ).json()
    reader = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/api/v1/webhooks", headers=reader).status_code == 200
    refused = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1/"}, headers=reader)
    assert refused.status_code == 403
