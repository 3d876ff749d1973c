"""Per-key rate limits and usage quotas through the API: 429s, headers, verify answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from keyplane.config import Settings
from keyplane.core.grant import GrantCode
from keyplane.service.records import Actor, Caller, Quota
from keyplane.service.services import Services
from tests.conftest import require_service
from tests.support import Clock, Tenant, bearer

MakeKey = Callable[..., dict[str, object]]


def whoami(client: TestClient, key: object) -> Response:
    return client.get("/api/v1/whoami", headers=bearer(str(key)))


def test_rate_limit_counts_down_then_answers_429_with_headers(
    client: TestClient, make_key: MakeKey
) -> None:
    created = make_key(rate_limit={"limit": 3, "window_seconds": 60})
    assert created["rate_limit"] == {"limit": 3, "window_seconds": 60}
    remaining = []
    for _ in range(3):
        answer = client.get("/api/v1/whoami", headers=bearer(str(created["key"])))
        assert answer.status_code == 200
        assert answer.headers["ratelimit-limit"] == "3"
        assert answer.headers["ratelimit-policy"] == "3;w=60"
        assert 0 < int(answer.headers["ratelimit-reset"]) <= 120
        remaining.append(answer.headers["ratelimit-remaining"])
    assert remaining == ["2", "1", "0"]
    refused = client.get("/api/v1/whoami", headers=bearer(str(created["key"])))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 120
    body = refused.json()
    assert (body["code"], body["status"], body["type"]) == (
        "RATE_LIMITED",
        429,
        "urn:keyplane:problem:rate-limited",
    )


def test_management_api_is_rate_limited_too(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    created = make_key("keys:read", rate_limit={"limit": 1})
    url = f"/api/v1/projects/{tenant.project_id}/keys"
    assert client.get(url, headers=bearer(str(created["key"]))).status_code == 200
    refused = client.get(url, headers=bearer(str(created["key"])))
    assert refused.status_code == 429
    assert "retry-after" in refused.headers


def test_keys_without_limits_get_no_ratelimit_headers(client: TestClient, tenant: Tenant) -> None:
    answer = client.get("/api/v1/whoami", headers=tenant.headers)
    assert answer.status_code == 200
    assert not any(name.lower().startswith("ratelimit") for name in answer.headers)


def test_a_quota_without_refill_is_used_up_for_good(
    client: TestClient, tenant: Tenant, make_key: MakeKey, services: Services
) -> None:
    created = make_key(quota={"limit": 2})
    assert created["quota"] == {
        "limit": 2,
        "refill": None,
        "used": 0,
        "remaining": 2,
        "resets_at": None,
    }
    assert [whoami(client, created["key"]).status_code for _ in range(2)] == [200, 200]
    refused = client.get("/api/v1/whoami", headers=bearer(str(created["key"])))
    assert refused.status_code == 429
    assert refused.json()["code"] == "USAGE_EXCEEDED"
    assert "retry-after" not in refused.headers  # retrying will not help
    assert refused.headers["ratelimit-remaining"] == "0"
    shown = client.get(f"/api/v1/keys/{created['id']}", headers=tenant.headers).json()
    assert (shown["quota"]["used"], shown["quota"]["remaining"]) == (2, 0)


def test_quota_is_durable_across_processes(
    services: Services, settings: Settings, tenant: Tenant, clock: Clock
) -> None:
    caller = Caller(tenant.organization_id, ("*",), Actor("key:test"))
    created = services.keys.create(caller, tenant.project_id, name="q", quota=Quota(3))
    value = created.secret.reveal()
    assert [services.verifier.verify(value).code for _ in range(2)] == [GrantCode.VALID] * 2
    services.usage.flush()
    restarted = Services.open(settings, clock=clock)
    try:
        codes = [restarted.verifier.verify(value).code for _ in range(2)]
        assert codes == [GrantCode.VALID, GrantCode.USAGE_EXCEEDED]
        restarted.usage.flush()
        assert restarted.keys.get(caller, created.record.id).quota.used == 3  # type: ignore[union-attr]
    finally:
        restarted.close()


def test_a_daily_quota_refills_the_next_utc_day(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = Caller(tenant.organization_id, ("*",), Actor("key:test"))
    created = services.keys.create(caller, tenant.project_id, name="q", quota=Quota(1, "day"))
    value = created.secret.reveal()
    first = services.verifier.verify(value)
    assert first.code is GrantCode.VALID
    assert first.quota is not None
    assert first.quota.remaining == 0
    assert first.quota.reset_at is not None
    assert services.verifier.verify(value).code is GrantCode.USAGE_EXCEEDED
    services.usage.flush()
    clock.advance(timedelta(days=1))
    assert services.verifier.verify(value).code is GrantCode.VALID


def test_verify_answers_rate_limited_with_remaining_and_reset(
    client: TestClient, make_key: MakeKey
) -> None:
    gateway = bearer(str(make_key("keys:verify", name="gateway")["key"]))
    limited = make_key(rate_limit={"limit": 1, "window_seconds": 10}, quota={"limit": 5})
    first = client.post("/api/v1/verify", json={"key": limited["key"]}, headers=gateway).json()
    assert first["valid"] is True
    assert first["rate_limit"]["remaining"] == 0
    assert first["quota"]["remaining"] == 4
    assert first["quota"]["reset"] is None
    second = client.post("/api/v1/verify", json={"key": limited["key"]}, headers=gateway).json()
    assert (second["valid"], second["code"]) == (False, "RATE_LIMITED")
    assert second["rate_limit"]["limit"] == 1
    assert second["rate_limit"]["remaining"] == 0
    assert second["rate_limit"]["reset"] is not None
    assert second["name"] is None  # nothing more about a key that does not grant access


def test_limits_can_be_changed_and_removed(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    created = make_key(rate_limit={"limit": 1})
    url = f"/api/v1/keys/{created['id']}"
    changed = client.patch(
        url, json={"rate_limit": {"limit": 50, "window_seconds": 1}}, headers=tenant.headers
    )
    assert changed.json()["rate_limit"] == {"limit": 50, "window_seconds": 1}
    removed = client.patch(url, json={"rate_limit": None, "quota": None}, headers=tenant.headers)
    assert removed.json()["rate_limit"] is None
    assert removed.json()["quota"] is None
    audit = client.get(f"/api/v1/audit-events?key_id={created['id']}", headers=tenant.headers)
    changes = [item["details"].get("changes") for item in audit.json()["items"]]
    assert {"rate_limit": {"limit": 50, "window_seconds": 1}} in changes
    assert {"rate_limit": None, "quota": None} in changes


@pytest.mark.parametrize(
    "body",
    [
        {"rate_limit": {"limit": 0}},
        {"rate_limit": {"limit": 5, "window_seconds": 0}},
        {"rate_limit": {"limit": 5, "window_seconds": 86_401}},
        {"quota": {"limit": -1}},
        {"quota": {"limit": 5, "refill": "week"}},
        {"quota": {"limit": 5, "extra": 1}},
    ],
)
def test_bad_limits_are_422(client: TestClient, tenant: Tenant, body: dict[str, object]) -> None:
    answer = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": "x", **body},
        headers=tenant.headers,
    )
    assert answer.status_code == 422


def test_a_shared_quota_holds_across_processes_over_redis(settings: Settings, clock: Clock) -> None:
    redis_url = require_service("KEYPLANE_TEST_REDIS_URL", "Redis")
    one = Services.open(replace(settings, redis_url=redis_url), clock=clock)
    two = Services.open(replace(settings, redis_url=redis_url), clock=clock)
    try:
        boot = one.bootstrap(organization_name="Q", project_name="P", owner_email="q@q.test")
        caller = Caller(boot.accounts.organization.id, ("*",), Actor("key:test"))
        created = one.keys.create(caller, boot.accounts.project.id, name="q", quota=Quota(4))
        value = created.secret.reveal()
        codes = [side.verifier.verify(value).code for _ in range(4) for side in (one, two)]
        assert codes.count(GrantCode.VALID) == 4
        assert codes.count(GrantCode.USAGE_EXCEEDED) == 4
        one.usage.flush()
        two.usage.flush()
        assert one.keys.get(caller, created.record.id).quota.used == 4  # type: ignore[union-attr]
    finally:
        one.close()
        two.close()
