"""The SDK's rate limits, quotas and usage against a real Keyplane server, sync and async."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from keyplane.client import (
    AsyncClient,
    BadRequest,
    Client,
    Quota,
    QuotaStatus,
    RateLimit,
    Usage,
    UsageBucket,
)
from tests.live import LiveServer


@pytest.fixture
def tenant_client(server: LiveServer) -> Iterator[tuple[Client, str]]:
    tenant = server.tenant()
    with Client(tenant.key, base_url=server.url, max_retries=0) as client:
        yield client, tenant.project_id


def test_a_key_is_created_with_a_rate_limit_and_a_quota_and_reads_them_back(
    tenant_client: tuple[Client, str],
) -> None:
    client, project = tenant_client
    created = client.keys.create(
        project, name="metered", rate_limit=RateLimit(100, 30), quota=Quota(1000, "day")
    )
    assert created.rate_limit == RateLimit(100, 30)
    assert isinstance(created.quota, QuotaStatus)
    assert (created.quota.limit, created.quota.refill) == (1000, "day")
    assert (created.quota.used, created.quota.remaining) == (0, 1000)
    assert created.quota.resets_at is not None
    fetched = client.keys.get(created.id)
    assert (fetched.rate_limit, fetched.quota) == (created.rate_limit, created.quota)
    assert created.to_json()["rate_limit"] == {"limit": 100, "window_seconds": 30}
    assert created.to_json()["quota"]["refill"] == "day"


def test_a_key_without_limits_has_none(tenant_client: tuple[Client, str]) -> None:
    client, project = tenant_client
    created = client.keys.create(project, name="free")
    assert (created.rate_limit, created.quota) == (None, None)


def test_update_sets_changes_and_removes_limits_and_leaves_unsent_ones(
    tenant_client: tuple[Client, str],
) -> None:
    client, project = tenant_client
    key = client.keys.create(project, name="k", rate_limit=RateLimit(5))
    assert key.rate_limit == RateLimit(5, 60)
    with_quota = client.keys.update(key.id, quota=Quota(10))
    assert with_quota.rate_limit == RateLimit(5, 60)  # not sent: unchanged
    assert with_quota.quota is not None
    assert (with_quota.quota.limit, with_quota.quota.refill) == (10, None)
    assert with_quota.quota.resets_at is None  # a quota in total never resets
    changed = client.keys.update(key.id, rate_limit=RateLimit(7, 10))
    assert changed.rate_limit == RateLimit(7, 10)
    cleared = client.keys.update(key.id, rate_limit=None, quota=None)
    assert (cleared.rate_limit, cleared.quota) == (None, None)


def test_a_limit_the_server_refuses_is_a_bad_request(tenant_client: tuple[Client, str]) -> None:
    client, project = tenant_client
    with pytest.raises(BadRequest):
        client.keys.create(project, name="k", rate_limit=RateLimit(0))
    with pytest.raises(BadRequest):
        client.keys.create(project, name="k", quota=Quota(5, "week"))  # type: ignore[arg-type]


def test_usage_counts_verifications_by_outcome(
    server: LiveServer, tenant_client: tuple[Client, str]
) -> None:
    client, project = tenant_client
    created = client.keys.create(project, name="svc", scopes=["jobs:run"])
    assert client.verify(created.key, scopes=["jobs:run"]).valid
    assert client.verify(created.key, scopes=["jobs:admin"]).code == "INSUFFICIENT_SCOPE"
    hours = client.keys.usage(created.id, interval="hour")
    assert isinstance(hours, Usage)
    assert (hours.key_id, hours.interval, len(hours.buckets)) == (created.id, "hour", 48)
    last = hours.buckets[-1]
    assert isinstance(last, UsageBucket)
    assert last.outcomes == {"VALID": 1, "INSUFFICIENT_SCOPE": 1}
    assert last.total == 2
    assert last.start.tzinfo is not None
    assert list(hours) == list(hours.buckets)
    days = client.keys.usage(created.id)
    assert (days.interval, len(days.buckets)) == ("day", 31)
    now = datetime.now(UTC)
    window = client.keys.usage(created.id, interval="day", since=now - timedelta(days=2), until=now)
    assert len(window.buckets) == 3
    assert window.buckets[-1].total == 2
    assert window.to_json()["buckets"][-1]["outcomes"] == last.outcomes


def test_usage_refuses_a_time_without_a_time_zone(tenant_client: tuple[Client, str]) -> None:
    client, project = tenant_client
    created = client.keys.create(project, name="k")
    with pytest.raises(ValueError, match="time zone"):
        client.keys.usage(created.id, since=datetime(2026, 1, 1))


def test_the_async_client_sends_limits_and_reads_usage(server: LiveServer) -> None:
    tenant = server.tenant()

    async def scenario() -> None:
        async with AsyncClient(tenant.key, base_url=server.url) as client:
            created = await client.keys.create(
                tenant.project_id, name="a", rate_limit=RateLimit(3, 1), quota=Quota(9, "month")
            )
            assert created.rate_limit == RateLimit(3, 1)
            assert created.quota is not None
            assert created.quota.refill == "month"
            updated = await client.keys.update(created.id, rate_limit=None)
            assert updated.rate_limit is None
            assert updated.quota == created.quota
            assert (await client.verify(created.key)).valid
            usage = await client.keys.usage(created.id, interval="hour")
            assert usage.buckets[-1].outcomes == {"VALID": 1}

    anyio.run(scenario)
