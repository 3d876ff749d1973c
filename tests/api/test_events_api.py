"""The events API, who uses a key, and canary keys through the API."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from keyplane.core.events import EVENT_TYPES
from keyplane.service.services import Services
from tests.support import Tenant, bearer

MakeKey = Callable[..., dict[str, object]]


def test_a_canary_answers_exactly_like_an_unknown_key_everywhere(
    client: TestClient, tenant: Tenant, make_key: MakeKey, services: Services
) -> None:
    canary = make_key("keys:read", name="planted in the wiki", canary=True)
    assert canary["canary"] is True
    unknown = services.settings.key_format.generate().reveal()
    gateway = bearer(str(make_key("keys:verify", name="gateway")["key"]))
    for path in ("/api/v1/whoami", f"/api/v1/projects/{tenant.project_id}/keys"):
        planted = client.get(path, headers=bearer(str(canary["key"])))
        absent = client.get(path, headers=bearer(unknown))
        assert planted.status_code == absent.status_code == 401
        assert planted.content == absent.content
        assert planted.headers.get("www-authenticate") == absent.headers.get("www-authenticate")
    planted = client.post("/api/v1/verify", json={"key": canary["key"]}, headers=gateway)
    absent = client.post("/api/v1/verify", json={"key": unknown}, headers=gateway)
    assert planted.json() == absent.json()
    assert planted.json()["valid"] is False
    services.usage.flush()
    events = client.get("/api/v1/events?type=key.canary_used", headers=tenant.headers).json()
    assert events["items"]
    assert {event["data"]["key"]["id"] for event in events["items"]} == {canary["id"]}
    # The direct calls carry the caller's address; /verify only knows what the gateway sent.
    assert {event["data"]["details"]["client_ip"] for event in events["items"]} == {
        "203.0.113.7",
        None,
    }


def test_callers_of_a_key(
    client: TestClient, tenant: Tenant, make_key: MakeKey, services: Services
) -> None:
    used = make_key(name="ci")
    for agent in ("sdk/1.0", "sdk/1.0", "curl/8"):
        headers = {**bearer(str(used["key"])), "user-agent": agent}
        assert client.get("/api/v1/whoami", headers=headers).is_success
    services.usage.flush()
    answer = client.get(f"/api/v1/keys/{used['id']}/callers?days=7", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["days"] == 7
    assert [(c["value"], c["count"]) for c in body["ips"]] == [("203.0.113.7", 3)]
    assert sorted((c["value"], c["count"]) for c in body["user_agents"]) == [
        ("curl/8", 1),
        ("sdk/1.0", 2),
    ]
    assert (
        client.get(f"/api/v1/keys/{used['id']}/callers?days=0", headers=tenant.headers).status_code
        == 422
    )
    assert (
        client.get("/api/v1/keys/key_AAAAAAAAAAAAAAAA/callers", headers=tenant.headers).status_code
        == 404
    )


def test_events_list_and_types(client: TestClient, tenant: Tenant, make_key: MakeKey) -> None:
    created = make_key(name="short-lived")
    assert client.delete(f"/api/v1/keys/{created['id']}", headers=tenant.headers).is_success
    revoked = client.get("/api/v1/events?type=key.revoked", headers=tenant.headers).json()
    [event] = revoked["items"]
    assert event["id"].startswith("msg_")
    assert event["data"]["key"]["id"] == created["id"]
    assert event["data"]["key"]["status"] == "revoked"
    assert "key_hash" not in str(event)
    assert client.get("/api/v1/events?type=key.nope", headers=tenant.headers).status_code == 422
    types = client.get("/api/v1/event-types", headers=bearer(str(created["key"])))
    assert types.status_code == 401  # the revoked key
    types = client.get("/api/v1/event-types", headers=tenant.headers).json()
    assert {t["name"] for t in types} == set(EVENT_TYPES)
