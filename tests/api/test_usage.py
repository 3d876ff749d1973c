"""Usage analytics: counters per key, hour or day and outcome, written behind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import KeyUsage
from tests.support import Clock, Tenant, bearer

MakeKey = Callable[..., dict[str, object]]


def use(client: TestClient, make_key: MakeKey) -> dict[str, object]:
    """A key used twice (VALID) and verified once for a scope it lacks."""
    created = make_key("reports:read")
    for _ in range(2):
        assert client.get("/api/v1/whoami", headers=bearer(str(created["key"]))).is_success
    gateway = bearer(str(make_key("keys:verify", name="gateway")["key"]))
    answer = client.post(
        "/api/v1/verify", json={"key": created["key"], "scopes": ["admin"]}, headers=gateway
    )
    assert answer.json()["code"] == "INSUFFICIENT_SCOPE"
    return created


@pytest.mark.parametrize("flushed", [False, True], ids=["pending", "flushed"])
def test_hourly_counts_by_outcome(
    client: TestClient,
    tenant: Tenant,
    make_key: MakeKey,
    services: Services,
    clock: Clock,
    flushed: bool,
) -> None:
    created = use(client, make_key)
    if flushed:
        services.usage.flush()
    answer = client.get(f"/api/v1/keys/{created['id']}/usage?interval=hour", headers=tenant.headers)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["key_id"], body["interval"]) == (created["id"], "hour")
    assert len(body["buckets"]) == 48
    last = body["buckets"][-1]
    hour = clock().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(last["start"].replace("Z", "+00:00")) == hour
    assert last["outcomes"] == {"VALID": 2, "INSUFFICIENT_SCOPE": 1}
    assert last["total"] == 3
    assert all(bucket["total"] == 0 for bucket in body["buckets"][:-1])


def test_daily_counts_add_up_over_flushes_in_one_row_per_outcome(
    client: TestClient, tenant: Tenant, make_key: MakeKey, services: Services
) -> None:
    created = use(client, make_key)
    services.usage.flush()
    for _ in range(3):
        client.get("/api/v1/whoami", headers=bearer(str(created["key"])))
    services.usage.flush()
    days = client.get(f"/api/v1/keys/{created['id']}/usage", headers=tenant.headers).json()
    assert len(days["buckets"]) == 31  # 30 days back and today
    assert days["buckets"][-1]["outcomes"] == {"VALID": 5, "INSUFFICIENT_SCOPE": 1}
    with services.database.read() as session:
        rows = session.scalar(
            select(func.count()).select_from(KeyUsage).where(KeyUsage.key_id == created["id"])
        )
    assert rows == 4  # (hour, day) x (VALID, INSUFFICIENT_SCOPE): no row per request


def test_refused_uses_are_counted_with_their_outcome(
    client: TestClient, tenant: Tenant, make_key: MakeKey
) -> None:
    created = make_key()
    client.delete(f"/api/v1/keys/{created['id']}", headers=tenant.headers)
    assert client.get("/api/v1/whoami", headers=bearer(str(created["key"]))).status_code == 401
    days = client.get(f"/api/v1/keys/{created['id']}/usage", headers=tenant.headers).json()
    assert days["buckets"][-1]["outcomes"] == {"REVOKED": 1}


def test_service_method_for_the_console_chart(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = Caller(tenant.organization_id, ("*",), Actor("key:test"))
    services.verifier.verify(tenant.key)
    clock.advance(timedelta(days=2))
    services.verifier.verify(tenant.key)
    services.usage.flush()
    buckets = services.usage_history.buckets(caller, tenant.key_id, interval="day")
    assert len(buckets) == 31
    assert [bucket.total for bucket in buckets[-3:]] == [1, 0, 1]
    sparse = services.usage_history.buckets(caller, tenant.key_id, interval="day", zero_fill=False)
    assert [bucket.outcomes for bucket in sparse] == [{"VALID": 1}, {"VALID": 1}]


def test_another_organizations_key_is_404(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    answer = client.get(f"/api/v1/keys/{tenant.key_id}/usage", headers=other_tenant.headers)
    assert answer.status_code == 404
    assert answer.json()["code"] == "NOT_FOUND"


def test_usage_needs_keys_read(client: TestClient, tenant: Tenant, make_key: MakeKey) -> None:
    weak = make_key("keys:verify")
    answer = client.get(f"/api/v1/keys/{tenant.key_id}/usage", headers=bearer(str(weak["key"])))
    assert answer.status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "interval=week",
        "since=yesterday",
        "since=2026-01-01T00:00:00",  # no time zone
        "since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z",
        "interval=hour&since=2000-01-01T00:00:00Z",  # too many buckets
        # the edges of what a datetime holds: the arithmetic must not overflow (was a 500)
        "until=0001-01-01T00:00:00Z",
        "interval=hour&until=0001-01-01T05:00:00Z",
        "since=9999-12-31T00:00:00Z&until=9999-12-31T23:59:59Z&interval=day",
        "since=9999-12-31T22:00:00Z&interval=hour&until=9999-12-31T23:00:00Z",
        "since=0001-01-01T00:00:00+05:00",
        "until=9999-12-31T23:59:59-05:00",
    ],
)
def test_bad_queries_are_422(client: TestClient, tenant: Tenant, query: str) -> None:
    answer = client.get(f"/api/v1/keys/{tenant.key_id}/usage?{query}", headers=tenant.headers)
    assert answer.status_code == 422


def test_hourly_counters_are_pruned_after_62_days_daily_ones_stay(
    client: TestClient, tenant: Tenant, make_key: MakeKey, services: Services, clock: Clock
) -> None:
    created = use(client, make_key)
    services.usage.flush()
    assert services.usage.prune(clock() + timedelta(days=30)) == 0
    # This key (VALID, INSUFFICIENT_SCOPE), the management key and the gateway: one hour each
    assert services.usage.prune(clock() + timedelta(days=63)) == 4
    with services.database.read() as session:
        left = session.scalars(
            select(KeyUsage.interval).where(KeyUsage.key_id == created["id"])
        ).all()
    assert sorted(left) == ["day", "day"]
