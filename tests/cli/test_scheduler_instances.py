"""Two real ``keyplane serve`` processes on one PostgreSQL schema, both running the key
scheduler every 0.2 s: every expiring, expired, unused, auto-disabled and auto-revoked
event is raised exactly once."""

from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from keyplane.config import Settings
from keyplane.service.events.policies import KeyPolicy
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey, Event
from tests.processes import serve

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

KINDS = ("key.expiring", "key.expired", "key.unused", "key.auto_disabled", "key.auto_revoked")


def _prepare(services: Services) -> tuple[str, dict[str, list[str]]]:
    stamp = time.monotonic_ns()
    result = services.bootstrap(
        organization_name=f"Sched {stamp}",
        project_name="Default",
        owner_email=f"owner{stamp}@sched.test",
    )
    organization = result.accounts.organization.id
    project = result.accounts.project.id
    caller = Caller(organization, ("*",), Actor.operator())
    services.key_policies.set_policy(
        caller, KeyPolicy(stale_days=30, stale_disable=True, stale_revoke_days=10)
    )
    now = datetime.now(UTC)
    made: dict[str, list[str]] = {kind: [] for kind in KINDS}

    def create(kind: str, name: str, expires_at: datetime | None = None) -> None:
        created = services.keys.create(caller, project, name=name, expires_at=expires_at)
        made[kind].append(created.record.id)

    for number in range(5):
        create("key.expiring", f"soon {number}", now + timedelta(days=3))
        create("key.expired", f"gone {number}", now + timedelta(seconds=1))
        create("key.unused", f"idle {number}")
        create("key.auto_disabled", f"stale {number}")
        create("key.auto_revoked", f"dead {number}")
    with services.database.write() as session:
        for kind, days in (("key.unused", 25), ("key.auto_disabled", 31)):
            session.execute(
                update(ApiKey)
                .where(ApiKey.id.in_(made[kind]))
                .values(updated_at=now - timedelta(days=days))
            )
        session.execute(
            update(ApiKey)
            .where(ApiKey.id.in_(made["key.auto_revoked"]))
            .values(
                enabled=False,
                disabled_reason="stale",
                disabled_at=now - timedelta(days=11),
                updated_at=now - timedelta(days=11),
            )
        )
    return organization, made


def _counts(services: Services, organization: str) -> Counter[tuple[str, str]]:
    with services.database.read() as session:
        rows = session.execute(
            select(Event.type, Event.data).where(
                Event.organization_id == organization, Event.type.in_(KINDS)
            )
        ).all()
    return Counter((kind, data["key"]["id"]) for kind, data in rows)


def test_two_instances_raise_every_scheduler_event_once(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    services = Services.open(Settings(data_dir=tmp_path, database_url=postgres_schema_url))
    try:
        organization, made = _prepare(services)
        expected = Counter({(kind, key_id): 1 for kind, ids in made.items() for key_id in ids})
        env = {
            **os.environ,
            "KEYPLANE_DATABASE_URL": postgres_schema_url,
            "KEYPLANE_SCHEDULER_INTERVAL": "0.2",
        }
        with ExitStack() as stack:
            stack.enter_context(serve(env, tmp_path / "a.log"))
            stack.enter_context(serve(env, tmp_path / "b.log"))
            deadline = time.monotonic() + 30
            while _counts(services, organization) != expected:
                assert time.monotonic() < deadline, _counts(services, organization)
                time.sleep(0.2)
            time.sleep(1.5)  # several more rounds of both: nothing is raised twice
        assert _counts(services, organization) == expected
        for log in ("a.log", "b.log"):
            assert "scheduler: unexpected error" not in (tmp_path / log).read_text()
    finally:
        services.close()
