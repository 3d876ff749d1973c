from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from keyplane.core.grant import KeyState
from keyplane.service.keys.cache import KeyCache
from keyplane.service.records import Usage
from keyplane.service.services import Services
from tests.support import Tenant


def state(key_id: str = "key_x") -> KeyState:
    return KeyState(
        key_id=key_id,
        name="n",
        hint="kp_...abcd",
        project_id="prj_x",
        organization_id="org_x",
        scopes=(),
        enabled=True,
        revoked_at=None,
        expires_at=None,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = KeyCache(ttl=1.0, max_size=10, clock=clock)
    cache.put("h", state(), cache.generation())
    clock.now = 0.999
    assert cache.get("h") == state()
    clock.now = 1.0
    assert cache.get("h") is None


def test_least_recently_used_entries_go_first() -> None:
    cache = KeyCache(ttl=60, max_size=2)
    cache.put("a", state("key_a"), cache.generation())
    cache.put("b", state("key_b"), cache.generation())
    cache.get("a")
    cache.put("c", state("key_c"), cache.generation())
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (
        state("key_a"),
        None,
        state("key_c"),
    )
    assert len(cache) == 2


def test_a_read_that_raced_an_invalidation_is_not_cached() -> None:
    """A look-up read storage, then a revocation invalidated: the stale read must not stick."""
    cache = KeyCache(ttl=60, max_size=10)
    generation = cache.generation()  # the look-up starts
    cache.invalidate("h")  # a revocation commits and invalidates meanwhile
    cache.put("h", state(), generation)  # the look-up finishes with what it read before
    assert cache.get("h") is None


def test_a_zero_size_cache_caches_nothing() -> None:
    cache = KeyCache(ttl=60, max_size=0)
    cache.put("h", state(), cache.generation())
    assert cache.get("h") is None


def test_uses_recorded_during_a_flush_are_kept_for_the_next(
    services: Services, tenant: Tenant
) -> None:
    buffer = services.usage
    now = datetime.now(UTC)
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        index = 0
        while not stop.is_set():
            try:
                buffer.record(f"key_{index % 500:016d}", Usage(now, None, None))
                buffer.record(tenant.key_id, Usage(now + timedelta(microseconds=index), None, None))
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)
                return
            index += 1

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for _ in range(20):
            buffer.flush()
    finally:
        stop.set()
        thread.join()
    assert errors == []
    buffer.flush()
    assert buffer.pending(tenant.key_id) is None


def test_a_failed_flush_keeps_the_uses_for_the_next_try(
    services: Services, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = services.usage
    at = datetime.now(UTC).replace(microsecond=0)
    buffer.record(tenant.key_id, Usage(at, ip_address("192.0.2.1"), "a"))

    @contextmanager
    def broken() -> Iterator[Session]:
        raise OperationalError("UPDATE", {}, Exception("database is down"))
        yield  # pragma: no cover

    with monkeypatch.context() as patch:
        patch.setattr(services.database, "write", broken)
        assert buffer.flush() == 0
    assert buffer.pending(tenant.key_id) == Usage(at, ip_address("192.0.2.1"), "a")
    assert buffer.flush() == 1
    assert buffer.pending(tenant.key_id) is None


def test_stop_writes_what_is_pending(services: Services, tenant: Tenant) -> None:
    services.usage.start()
    services.usage.record(tenant.key_id, Usage(datetime.now(UTC), None, "x"))
    services.usage.stop()
    assert services.usage.pending(tenant.key_id) is None
