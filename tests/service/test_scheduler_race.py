"""Scanners racing on one database: every notice is raised once.

Two ``Services`` (two connection pools, as two instances have) run scans at the
same moment from several threads. ``_scan`` skips the advisory lock on purpose:
what must hold even without it is the ``key_notices`` primary key (ON CONFLICT DO
NOTHING), so the lock only saves work. ``run_once`` with the lock is raced too.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from keyplane.config import Settings
from keyplane.service.events.policies import KeyPolicy
from keyplane.service.events.scheduler import ADVISORY_LOCK
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey, Event
from tests.support import Clock, Tenant

KINDS = ("key.expiring", "key.expired", "key.unused", "key.auto_disabled", "key.auto_revoked")


def _world(services: Services, tenant: Tenant, clock: Clock) -> dict[str, list[str]]:
    caller = Caller(tenant.organization_id, ("*",), Actor("key:test"))
    services.key_policies.set_policy(
        caller, KeyPolicy(stale_days=30, stale_disable=True, stale_revoke_days=10)
    )
    made: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for number in range(6):
        made["key.expiring"].append(
            services.keys.create(
                caller,
                tenant.project_id,
                name=f"soon {number}",
                expires_at=clock.now + timedelta(days=3),
            ).record.id
        )
        made["key.expired"].append(
            services.keys.create(
                caller,
                tenant.project_id,
                name=f"gone {number}",
                expires_at=clock.now + timedelta(seconds=1),
            ).record.id
        )
    ages = {"key.unused": 25, "key.auto_disabled": 31}
    for kind in ages:
        for number in range(6):
            key_id = services.keys.create(caller, tenant.project_id, name=f"{kind} {number}")
            made[kind].append(key_id.record.id)
    for number in range(6):
        key_id = services.keys.create(caller, tenant.project_id, name=f"revoke {number}")
        made["key.auto_revoked"].append(key_id.record.id)
    with services.database.write() as session:
        for kind, days in ages.items():
            session.execute(
                update(ApiKey)
                .where(ApiKey.id.in_(made[kind]))
                .values(updated_at=clock.now - timedelta(days=days))
            )
        session.execute(
            update(ApiKey)
            .where(ApiKey.id.in_(made["key.auto_revoked"]))
            .values(
                enabled=False,
                disabled_reason="stale",
                disabled_at=clock.now - timedelta(days=11),
                updated_at=clock.now - timedelta(days=11),
            )
        )
        session.execute(
            update(ApiKey)  # the management key: recently active, out of the picture
            .where(ApiKey.id == tenant.key_id)
            .values(last_used_at=clock.now + timedelta(seconds=5))
        )
    return made


def _counts(services: Services) -> Counter[tuple[str, str]]:
    with services.database.read() as session:
        rows = session.execute(select(Event.type, Event.data).where(Event.type.in_(KINDS))).all()
    return Counter((kind, data["key"]["id"]) for kind, data in rows)


@pytest.mark.parametrize("locked", [False, True], ids=["notices-alone", "with-the-lock"])
def test_racing_scanners_raise_every_notice_once(
    services: Services, tenant: Tenant, clock: Clock, settings: Settings, locked: bool
) -> None:
    made = _world(services, tenant, clock)
    other = Services.open(settings, clock=clock)
    try:
        now = clock.now + timedelta(seconds=2)
        start = threading.Barrier(6)
        failures: list[BaseException] = []

        def scan(which: Services) -> None:
            start.wait()
            try:
                for _ in range(3):
                    if locked:
                        which.scheduler.run_once(now)
                    else:
                        which.scheduler._scan(now)
            except BaseException as error:  # pragma: no cover - reported below
                failures.append(error)

        threads = [
            threading.Thread(target=scan, args=(which,))
            for which in (services, other, services, other, services, other)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        if locked:  # a scan that skipped for the lock: one more, alone, catches up
            other.scheduler.run_once(now)
    finally:
        other.close()
    counts = _counts(services)
    expected = Counter({(kind, key_id): 1 for kind, ids in made.items() for key_id in ids})
    assert counts == expected


def test_a_scan_releases_the_lock_so_another_instance_scans_next(
    services: Services, tenant: Tenant, clock: Clock, settings: Settings
) -> None:
    other = Services.open(settings, clock=clock)
    try:
        for scanner in (services, other, services, other):
            assert scanner.scheduler.run_once().ran
    finally:
        other.close()
    if services.database.engine.dialect.name == "postgresql":
        with services.database.engine.connect() as connection:
            held = connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = :key AND pid = pg_backend_pid()"
                ),
                {"key": ADVISORY_LOCK},
            ).scalar()
        assert held == 0
