"""What verification saw, after a flush: callers, canary uses, rate-limit and quota events."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_address

import pytest
from sqlalchemy import func, select

from keyplane.core.grant import GrantCode
from keyplane.service.events.signals import MAX_CALLERS_PER_KEY
from keyplane.service.records import Actor, Caller, Quota, RateLimit
from keyplane.service.services import Services
from keyplane.storage.models import AuditEvent, Event, KeyCaller
from tests.support import Clock, Tenant


@pytest.fixture
def caller(tenant: Tenant) -> Caller:
    return Caller(tenant.organization_id, ("*",), Actor("key:test"))


def events_of(services: Services, event_type: str) -> list[Event]:
    with services.database.read() as session:
        return list(
            session.scalars(select(Event).where(Event.type == event_type).order_by(Event.pk))
        )


def test_canary_is_refused_like_an_unknown_key_and_raises_canary_used(
    services: Services, tenant: Tenant, caller: Caller
) -> None:
    canary = services.keys.create(caller, tenant.project_id, name="planted", canary=True)
    assert canary.record.canary
    unknown = services.settings.key_format.generate().reveal()
    for _ in range(3):
        decision = services.verifier.verify(
            canary.secret.reveal(), client_ip=ip_address("198.51.100.9"), user_agent="curl/8"
        )
        assert decision == services.verifier.verify(unknown)  # same code, no key
        assert decision.code is GrantCode.NOT_FOUND
        assert decision.key is None
    services.usage.flush()
    [event] = events_of(services, "key.canary_used")
    assert event.data["key"]["id"] == canary.record.id
    assert event.data["details"] == {
        "client_ip": "198.51.100.9",
        "user_agent": "curl/8",
        "uses": 3,
    }
    with services.database.read() as session:
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "key.canary_used")
        ).one()
    assert (audit.client_ip, audit.user_agent) == ("198.51.100.9", "curl/8")


def test_canary_is_never_cached(
    services: Services, tenant: Tenant, caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = services.keys.create(caller, tenant.project_id, name="planted", canary=True)
    services.verifier.verify(canary.secret.reveal())
    loads: list[str] = []
    real = services.verifier.load
    monkeypatch.setattr(services.verifier, "load", lambda h: loads.append(h) or real(h))
    services.verifier.verify(canary.secret.reveal())
    assert len(loads) == 1  # looked up again, like an unknown key


def test_canary_used_again_in_the_same_minute_raises_one_event_per_caller(
    services: Services, tenant: Tenant, caller: Caller, clock: Clock
) -> None:
    canary = services.keys.create(caller, tenant.project_id, name="planted", canary=True)
    value = canary.secret.reveal()
    services.verifier.verify(value, client_ip=ip_address("198.51.100.9"))
    services.usage.flush()
    services.verifier.verify(value, client_ip=ip_address("198.51.100.9"))
    services.verifier.verify(value, client_ip=ip_address("198.51.100.10"))
    services.usage.flush()
    assert len(events_of(services, "key.canary_used")) == 2
    clock.advance(timedelta(minutes=2))
    services.verifier.verify(value, client_ip=ip_address("198.51.100.9"))
    services.usage.flush()
    assert len(events_of(services, "key.canary_used")) == 3


def test_a_rolled_canary_stays_a_canary(services: Services, tenant: Tenant, caller: Caller) -> None:
    canary = services.keys.create(caller, tenant.project_id, name="planted", canary=True)
    rolled = services.keys.roll(caller, canary.record.id)
    assert rolled.record.canary
    assert services.verifier.verify(rolled.secret.reveal()).code is GrantCode.NOT_FOUND


def test_callers_are_counted_per_ip_and_user_agent(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    for address, agent in [
        ("198.51.100.1", "sdk/1"),
        ("198.51.100.1", "sdk/1"),
        ("2001:db8::5", None),
    ]:
        assert services.verifier.verify(
            tenant.key, client_ip=ip_address(address), user_agent=agent
        ).valid
    services.usage.flush()
    services.verifier.verify(tenant.key, client_ip=ip_address("198.51.100.1"), user_agent="sdk/1")
    services.usage.flush()
    found = services.signals.callers_of(tenant.key_id, clock())
    assert sorted((c.value, c.count) for c in found.ips) == [
        ("198.51.100.1", 3),
        ("2001:db8::5", 1),
    ]
    assert sorted((c.value, c.count) for c in found.user_agents) == [("", 1), ("sdk/1", 3)]
    assert found.ips_since(clock() - timedelta(days=7)) == 2
    clock.advance(timedelta(days=31))
    assert services.signals.callers_of(tenant.key_id, clock()).ips == ()
    assert services.signals.prune(clock()) == 4


def test_callers_are_bounded_per_key(services: Services, tenant: Tenant, clock: Clock) -> None:
    for batch in range(3):
        for n in range(60):
            services.verifier.verify(
                tenant.key, client_ip=ip_address(f"198.51.{batch}.{n}"), user_agent=f"ua/{n}"
            )
        clock.advance(timedelta(seconds=5))
        services.usage.flush()
    with services.database.read() as session:
        counts = dict(
            session.execute(
                select(KeyCaller.kind, func.count())
                .where(KeyCaller.key_id == tenant.key_id)
                .group_by(KeyCaller.kind)
            ).all()
        )
    assert counts == {"ip": MAX_CALLERS_PER_KEY, "user_agent": 60}
    newest = services.signals.callers_of(tenant.key_id, clock()).ips
    assert {c.value for c in newest} >= {f"198.51.2.{n}" for n in range(60)}


def test_rate_limited_is_raised_once_per_quarter_hour(
    services: Services, tenant: Tenant, caller: Caller, clock: Clock
) -> None:
    limited = services.keys.create(
        caller, tenant.project_id, name="limited", rate_limit=RateLimit(1, 60)
    )
    value = limited.secret.reveal()
    codes = [services.verifier.verify(value).code for _ in range(4)]
    assert codes.count(GrantCode.RATE_LIMITED) == 3
    services.usage.flush()
    services.verifier.verify(value)
    services.usage.flush()
    [event] = events_of(services, "key.rate_limited")
    assert event.data["details"]["refusals"] == 3
    assert event.data["key"]["id"] == limited.record.id


def test_quota_warning_at_80_and_exhausted_at_100_percent_once_per_period(
    services: Services, tenant: Tenant, caller: Caller
) -> None:
    quota = services.keys.create(caller, tenant.project_id, name="q", quota=Quota(10, "day"))
    value = quota.secret.reveal()
    for _ in range(7):
        assert services.verifier.verify(value).valid
    services.usage.flush()
    assert events_of(services, "key.quota_warning") == []
    services.verifier.verify(value)
    services.usage.flush()
    [warning] = events_of(services, "key.quota_warning")
    assert warning.data["details"]["used"] == 8
    assert warning.data["details"]["limit"] == 10
    for _ in range(4):
        services.verifier.verify(value)
    services.usage.flush()
    assert len(events_of(services, "key.quota_warning")) == 1
    [exhausted] = events_of(services, "key.quota_exhausted")
    assert exhausted.data["details"]["used"] == 10


def test_a_canary_use_outlives_a_failed_signal(
    services: Services, tenant: Tenant, caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = services.keys.create(caller, tenant.project_id, name="planted", canary=True)
    services.verifier.verify(canary.secret.reveal(), client_ip=ip_address("198.51.100.9"))
    real = services.usage.after_flush

    def broken(flushed: object) -> None:
        raise RuntimeError("database down")

    services.usage.after_flush = broken
    services.usage.flush()
    assert events_of(services, "key.canary_used") == []
    services.usage.after_flush = real
    services.usage.flush()
    assert len(events_of(services, "key.canary_used")) == 1


def test_a_canary_flood_from_many_addresses_raises_at_most_five_events_a_minute(
    services: Services, tenant: Tenant, caller: Caller, clock: Clock
) -> None:
    canary = services.keys.create(caller, tenant.project_id, name="planted", canary=True)
    for n in range(8):
        services.verifier.verify(canary.secret.reveal(), client_ip=ip_address(f"198.51.100.{n}"))
    services.usage.flush()
    assert len(events_of(services, "key.canary_used")) == 5
    clock.advance(timedelta(minutes=1))
    services.verifier.verify(canary.secret.reveal(), client_ip=ip_address("198.51.100.1"))
    services.usage.flush()
    assert len(events_of(services, "key.canary_used")) == 6
