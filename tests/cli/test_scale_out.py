"""Two real ``keyplane serve`` processes on one PostgreSQL schema (and one Redis)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from keyplane.config import Settings
from keyplane.service.services import Services
from tests.conftest import require_service
from tests.processes import fresh, serve

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@contextmanager
def instance(database_url: str, log: Path, **env_extra: str) -> Iterator[str]:
    """``keyplane serve`` on ``database_url`` (one worker); yields its base URL."""
    with serve({**os.environ, "KEYPLANE_DATABASE_URL": database_url, **env_extra}, log) as base:
        yield base


def bootstrap(database_url: str, tmp_path: Path) -> tuple[str, str]:
    """A fresh organization on the shared schema: (project id, management key)."""
    services = Services.open(Settings(data_dir=tmp_path, database_url=database_url))
    try:
        stamp = time.monotonic_ns()
        result = services.bootstrap(
            organization_name=f"Scale {stamp}",
            project_name="Default",
            owner_email=f"owner{stamp}@scale.test",
        )
        return result.accounts.project.id, result.key.secret.reveal()
    finally:
        services.close()


def test_revoke_through_a_and_b_refuses_within_a_second(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    project, management = bootstrap(postgres_schema_url, tmp_path)
    manage = {"Authorization": f"Bearer {management}"}
    with ExitStack() as stack:
        a = stack.enter_context(instance(postgres_schema_url, tmp_path / "a.log"))
        b = stack.enter_context(instance(postgres_schema_url, tmp_path / "b.log"))
        delays = []
        for round_number in range(3):
            created = fresh.post(
                f"{a}/api/v1/projects/{project}/keys",
                json={"name": f"shared {round_number}"},
                headers=manage,
            ).json()
            headers = {"X-API-Key": created["key"]}
            for base in (a, b):  # warm both caches
                for _ in range(3):
                    assert fresh.get(f"{base}/api/v1/whoami", headers=headers).status_code == 200
            assert fresh.delete(f"{a}/api/v1/keys/{created['id']}", headers=manage).is_success
            revoked = time.monotonic()
            while fresh.get(f"{b}/api/v1/whoami", headers=headers).status_code != 401:
                assert time.monotonic() - revoked < 1.0, "B still accepts the revoked key"
                time.sleep(0.005)
            delays.append(time.monotonic() - revoked)
            answer = fresh.get(f"{b}/api/v1/whoami", headers=headers)
            assert answer.json()["code"] == "REVOKED"
        assert max(delays) < 1.0


def test_a_rate_limit_holds_across_two_instances_over_redis(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    redis_url = require_service("KEYPLANE_TEST_REDIS_URL", "Redis")
    project, management = bootstrap(postgres_schema_url, tmp_path)
    with ExitStack() as stack:
        a = stack.enter_context(
            instance(postgres_schema_url, tmp_path / "a.log", KEYPLANE_REDIS_URL=redis_url)
        )
        b = stack.enter_context(
            instance(postgres_schema_url, tmp_path / "b.log", KEYPLANE_REDIS_URL=redis_url)
        )
        created = fresh.post(
            f"{a}/api/v1/projects/{project}/keys",
            json={"name": "limited", "rate_limit": {"limit": 6, "window_seconds": 300}},
            headers={"Authorization": f"Bearer {management}"},
        ).json()
        headers = {"X-API-Key": created["key"]}
        statuses = [
            fresh.get(f"{base}/api/v1/whoami", headers=headers).status_code
            for _ in range(6)
            for base in (a, b)
        ]
        assert statuses.count(200) == 6
        assert statuses.count(429) == 6
        refused = fresh.get(f"{b}/api/v1/whoami", headers=headers)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-limit"] == "6"
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.json()["code"] == "RATE_LIMITED"
