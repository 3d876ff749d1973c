"""The change feed: a change made through one process reaches every other process's cache.

Two ``Services`` on one database stand for two processes (each has its own
cache, feed and connections). Bounded waits: every case gives up after 5 s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select, text

from keyplane.config import Settings
from keyplane.core.grant import GrantCode
from keyplane.service.keys.lifecycle import KeyChanges
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.database import Database
from keyplane.storage.models import KeyChange
from tests.conftest import require_service
from tests.support import Clock, Tenant

REDIS_ENV = "KEYPLANE_TEST_REDIS_URL"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``condition`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail("condition not met in time")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def caller(tenant: Tenant) -> Caller:
    return Caller(tenant.organization_id, ("*",), Actor("key:test"))


@pytest.fixture
def second(settings: Settings, clock: Clock) -> Iterator[Services]:
    """Another process on the same database, with a long TTL and its feed running."""
    other = Services.open(replace(settings, key_cache_ttl=3600.0), clock=clock)
    other.start()
    try:
        yield other
    finally:
        other.close()


def refused_in(second: Services, key: str, code: GrantCode = GrantCode.REVOKED) -> float:
    return wait_for(lambda: second.verifier.verify(key).code is code)


def test_revocation_through_one_process_reaches_the_other(
    services: Services, second: Services, tenant: Tenant, caller: Caller
) -> None:
    created = services.keys.create(caller, tenant.project_id, name="shared")
    value = created.secret.reveal()
    assert second.verifier.verify(value).valid
    hits = second.cache.hits
    assert second.verifier.verify(value).valid
    assert second.cache.hits == hits + 1  # served from its cache (TTL an hour)
    services.keys.revoke(caller, created.record.id)
    assert refused_in(second, value) < 1.5


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (KeyChanges(enabled=False), GrantCode.DISABLED),
        (KeyChanges(scopes=["keys:read"]), GrantCode.INSUFFICIENT_SCOPE),
        (KeyChanges(ip_allowlist=["10.0.0.0/8"]), GrantCode.FORBIDDEN),
    ],
    ids=["disable", "scopes", "allowlist"],
)
def test_every_kind_of_change_reaches_the_other_process(
    services: Services,
    second: Services,
    tenant: Tenant,
    caller: Caller,
    change: KeyChanges,
    code: GrantCode,
) -> None:
    created = services.keys.create(caller, tenant.project_id, name="x", scopes=["keys:write"])
    value = created.secret.reveal()

    def check() -> GrantCode:
        return second.verifier.verify(value, required_scopes=["keys:write"]).code

    assert check() is GrantCode.VALID
    services.keys.update(caller, created.record.id, change)
    wait_for(lambda: check() is code)


def test_expiry_change_and_roll_reach_the_other_process(
    services: Services, second: Services, tenant: Tenant, caller: Caller, clock: Clock
) -> None:
    first = services.keys.create(caller, tenant.project_id, name="a")
    rolled = services.keys.create(caller, tenant.project_id, name="b")
    for created in (first, rolled):
        assert second.verifier.verify(created.secret.reveal()).valid
    services.keys.update(
        caller, first.record.id, KeyChanges(expires_at=clock() + timedelta(hours=1))
    )
    services.keys.roll(caller, rolled.record.id, grace=timedelta(0))
    clock.advance(timedelta(hours=2))
    wait_for(lambda: second.verifier.verify(first.secret.reveal()).code is GrantCode.EXPIRED)
    wait_for(lambda: second.verifier.verify(rolled.secret.reveal()).code is GrantCode.EXPIRED)


def test_a_change_that_rolls_back_is_not_published(
    services: Services, second: Services, tenant: Tenant, caller: Caller
) -> None:
    created = services.keys.create(caller, tenant.project_id, name="x")
    with services.database.read() as session:
        before = session.scalar(select(func.count()).select_from(KeyChange))

    def fail_after_noting() -> None:
        with services.database.write() as session:
            services.changes.record(session, created.secret.hash())
            raise RuntimeError("the change fails after being noted")

    with pytest.raises(RuntimeError):
        fail_after_noting()
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(KeyChange)) == before


def test_without_a_successful_poll_the_cache_is_not_trusted(
    services: Services, second: Services, tenant: Tenant
) -> None:
    assert second.verifier.verify(tenant.key).valid
    assert second.cache.get(services.settings.key_format.parse(tenant.key).hash()) is not None
    second.changes.stop()  # back to plain TTL: the entry is still there
    second.cache.synced(time.monotonic() - 2.0, second.changes.sync_bound)  # last poll 2 s ago
    assert second.cache.get(services.settings.key_format.parse(tenant.key).hash()) is None


@pytest.mark.postgres
def test_postgres_listener_delivers_and_reconnects(
    postgres_schema_url: str, tmp_path: object, clock: Clock
) -> None:
    """LISTEN/NOTIFY alone (the poller set to an hour), across a dropped connection."""
    settings = Settings(data_dir=tmp_path, database_url=postgres_schema_url)  # type: ignore[arg-type]
    writer = Services.open(settings, clock=clock)
    reader = Services.open(replace(settings, key_cache_ttl=3600.0), clock=clock)
    reader.changes.poll_interval = 3600.0
    reader.changes.sync_bound = 7200.0
    try:
        boot = writer.bootstrap(
            organization_name=f"Listen {time.monotonic_ns()}",
            project_name="P",
            owner_email=f"o{time.monotonic_ns()}@listen.test",
        )
        caller = Caller(boot.accounts.organization.id, ("*",), Actor("key:test"))
        project = boot.accounts.project.id
        reader.start()
        wait_for(lambda: reader.changes.listener_connects == 1)
        first = writer.keys.create(caller, project, name="a")
        assert reader.verifier.verify(first.secret.reveal()).valid
        writer.keys.revoke(caller, first.record.id)
        assert refused_in(reader, first.secret.reveal()) < 1.0

        # Drop the listener's connection from the server side; it must come back.
        pid = reader.changes.listener_pid
        admin = Database(postgres_schema_url)
        with admin.engine.begin() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.dispose()
        wait_for(lambda: reader.changes.listener_connects == 2)
        assert reader.changes.listener_pid != pid
        second_key = writer.keys.create(caller, project, name="b")
        assert reader.verifier.verify(second_key.secret.reveal()).valid
        writer.keys.revoke(caller, second_key.record.id)
        assert refused_in(reader, second_key.secret.reveal()) < 1.0
    finally:
        reader.close()
        writer.close()


def test_redis_pub_sub_delivers_and_reconnects(settings: Settings, clock: Clock) -> None:
    """Redis alone (the poller set to an hour): publish after commit, apply on receipt."""
    redis_url = require_service(REDIS_ENV, "Redis")
    writer = Services.open(replace(settings, redis_url=redis_url), clock=clock)
    reader = Services.open(
        replace(settings, redis_url=redis_url, key_cache_ttl=3600.0), clock=clock
    )
    reader.changes.poll_interval = 3600.0
    reader.changes.sync_bound = 7200.0
    try:
        boot = writer.bootstrap(
            organization_name="Redis", project_name="P", owner_email="o@redis.test"
        )
        caller = Caller(boot.accounts.organization.id, ("*",), Actor("key:test"))
        reader.start()
        wait_for(lambda: reader.changes.listener_connects == 1)
        time.sleep(0.2)  # the subscription is confirmed asynchronously
        created = writer.keys.create(caller, boot.accounts.project.id, name="a")
        assert reader.verifier.verify(created.secret.reveal()).valid
        notices = reader.changes.notices
        writer.keys.revoke(caller, created.record.id)
        assert refused_in(reader, created.secret.reveal()) < 1.0
        assert reader.changes.notices > notices

        # Drop the subscriber's connection from the Redis side; it must come back.
        admin = redis.Redis.from_url(redis_url)
        try:
            ours = [
                client["id"]
                for client in admin.client_list()
                if client.get("name") == reader.changes.client_name
            ]
            assert ours
            for client_id in ours:
                admin.client_kill_filter(_id=client_id)
        finally:
            admin.close()
        wait_for(lambda: reader.changes.listener_connects == 2)
        time.sleep(0.2)
        again = writer.keys.create(caller, boot.accounts.project.id, name="b")
        assert reader.verifier.verify(again.secret.reveal()).valid
        notices = reader.changes.notices
        writer.keys.revoke(caller, again.record.id)
        assert refused_in(reader, again.secret.reveal()) < 1.0
        assert reader.changes.notices > notices
    finally:
        reader.close()
        writer.close()


def test_old_changes_are_pruned(
    services: Services, tenant: Tenant, caller: Caller, clock: Clock
) -> None:
    created = services.keys.create(caller, tenant.project_id, name="x")
    services.keys.revoke(caller, created.record.id)
    clock.advance(timedelta(hours=2))
    services.changes.poll()  # the first poll prunes
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(KeyChange)) == 0


@pytest.mark.postgres
def test_a_lookup_on_a_dropped_connection_is_retried_once(
    postgres_schema_url: str, tmp_path: object, clock: Clock
) -> None:
    """The verifier's look-up pool has no pre-ping: a connection the server dropped
    fails once, and the look-up runs again on a fresh one."""
    settings = Settings(data_dir=tmp_path, database_url=postgres_schema_url, key_cache_size=0)  # type: ignore[arg-type]
    services = Services.open(settings, clock=clock)
    try:
        boot = services.bootstrap(
            organization_name=f"Retry {time.monotonic_ns()}",
            project_name="P",
            owner_email=f"r{time.monotonic_ns()}@retry.test",
        )
        key = boot.key.secret.reveal()
        assert services.verifier.verify(key).valid
        engine = services.database._lookup_engine
        assert engine is not None
        with engine.connect() as connection:
            pid = connection.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        admin = Database(postgres_schema_url)
        with admin.engine.begin() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.dispose()
        assert services.verifier.verify(key).valid
    finally:
        services.close()


def test_an_outage_seen_by_the_poller_is_a_few_lines_not_one_per_poll(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The poller retries every half second; it logged a warning at each try (57 lines in
    28 s of a PostgreSQL outage, per process). Now: the first at once, then one per
    interval with the count, and one line when the feed can be read again."""
    table = KeyChange.__tablename__
    with services.database.engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {table} RENAME TO {table}_away"))
    try:
        with caplog.at_level(logging.INFO, "keyplane.invalidation"):
            for _ in range(40):
                assert services.changes.poll() == 0
    finally:
        with services.database.engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE {table}_away RENAME TO {table}"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not poll the key change feed" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, "keyplane.invalidation"):
        services.changes.poll()
        services.changes.poll()
    assert [r.getMessage() for r in caplog.records] == ["the key change feed can be polled again"]
