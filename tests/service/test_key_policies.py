"""Key policies through the service: the lifetime rule on create, update and roll; the
scheduler with a moved clock (expiring, expired, unused, auto-disabled, auto-revoked,
each raised once); the dry run lists exactly the keys the next scan touches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from keyplane.core.errors import InvalidInput, NotPermitted, ReauthenticationRequired
from keyplane.core.grant import GrantCode
from keyplane.service.events.policies import DAY, KeyPolicy, Stage
from keyplane.service.keys.lifecycle import KeyChanges
from keyplane.service.records import Actor, Caller, Role
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey, AuditEvent, Event
from tests.support import Clock, Tenant


def caller_of(tenant: Tenant) -> Caller:
    return Caller(tenant.organization_id, ("*",), Actor("key:test"))


def events(services: Services, event_type: str) -> list[Event]:
    with services.database.read() as session:
        return list(
            session.scalars(select(Event).where(Event.type == event_type).order_by(Event.pk))
        )


def key_ids(found: list[Event]) -> list[str]:
    return [event.data["key"]["id"] for event in found]


# -- the lifetime rule ---------------------------------------------------------------


def test_a_key_without_expiry_gets_the_default(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    services.key_policies.set_policy(
        caller, KeyPolicy(max_lifetime_seconds=90 * DAY, default_expiry_seconds=30 * DAY)
    )
    created = services.keys.create(caller, tenant.project_id, name="ci")
    assert created.record.expires_at == clock.now + timedelta(days=30)


def test_without_a_default_a_key_without_expiry_is_refused_under_a_maximum(
    services: Services, tenant: Tenant
) -> None:
    caller = caller_of(tenant)
    services.key_policies.set_policy(caller, KeyPolicy(max_lifetime_seconds=90 * DAY))
    with pytest.raises(InvalidInput, match="must expire within 90 days") as raised:
        services.keys.create(caller, tenant.project_id, name="ci")
    assert raised.value.field == "expires_at"


def test_an_expiry_beyond_the_maximum_is_refused_with_the_latest_allowed(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    services.key_policies.set_policy(caller, KeyPolicy(max_lifetime_seconds=90 * DAY))
    with pytest.raises(InvalidInput, match="at most 90 days: expires_at must be on or before"):
        services.keys.create(
            caller, tenant.project_id, name="ci", expires_at=clock.now + timedelta(days=91)
        )
    ok = services.keys.create(
        caller, tenant.project_id, name="ci", expires_at=clock.now + timedelta(days=90)
    )
    assert ok.record.expires_at == clock.now + timedelta(days=90)


def test_update_cannot_move_the_expiry_past_the_maximum_or_remove_it(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    key = services.keys.create(
        caller, tenant.project_id, name="ci", expires_at=clock.now + timedelta(days=10)
    )
    services.key_policies.set_policy(caller, KeyPolicy(max_lifetime_seconds=30 * DAY))
    with pytest.raises(InvalidInput, match="at most 30 days"):
        services.keys.update(
            caller, key.record.id, KeyChanges(expires_at=clock.now + timedelta(days=31))
        )
    with pytest.raises(InvalidInput, match="must expire within 30 days"):
        services.keys.update(caller, key.record.id, KeyChanges(expires_at=None))
    assert services.keys.get(caller, key.record.id).expires_at == clock.now + timedelta(days=10)


def test_update_removing_the_expiry_gets_the_default_from_creation(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    key = services.keys.create(
        caller, tenant.project_id, name="ci", expires_at=clock.now + timedelta(days=1)
    )
    services.key_policies.set_policy(caller, KeyPolicy(default_expiry_seconds=30 * DAY))
    updated = services.keys.update(caller, key.record.id, KeyChanges(expires_at=None))
    assert updated.expires_at == key.record.created_at + timedelta(days=30)


def test_a_rolled_key_is_held_to_the_maximum(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    old = services.keys.create(caller, tenant.project_id, name="ci")  # before the policy
    services.key_policies.set_policy(caller, KeyPolicy(max_lifetime_seconds=30 * DAY))
    clock.advance(timedelta(days=2))
    new = services.keys.roll(caller, old.record.id)
    assert new.record.expires_at == clock.now + timedelta(days=30)


def test_a_policy_out_of_range_is_refused_with_its_field(
    services: Services, tenant: Tenant
) -> None:
    caller = caller_of(tenant)
    cases = [
        (KeyPolicy(max_lifetime_seconds=60), "max_lifetime_seconds"),
        (KeyPolicy(max_lifetime_seconds=6 * 365 * DAY), "max_lifetime_seconds"),
        (
            KeyPolicy(max_lifetime_seconds=10 * DAY, default_expiry_seconds=11 * DAY),
            "default_expiry_seconds",
        ),
        (KeyPolicy(stale_days=7), "stale_days"),
        (KeyPolicy(stale_days=3651), "stale_days"),
        (KeyPolicy(stale_days=30, stale_disable=True, stale_revoke_days=0), "stale_revoke_days"),
        (KeyPolicy(stale_days=30, stale_revoke_days=10), "stale_revoke_days"),
        (KeyPolicy(stale_disable=True), "stale_disable"),
    ]
    for policy, field in cases:
        with pytest.raises(InvalidInput) as raised:
            services.key_policies.set_policy(caller, policy)
        assert raised.value.field == field
    assert services.key_policies.policy(caller) == KeyPolicy()


def test_a_member_cannot_change_the_policy_and_an_admin_needs_sudo(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    member = Caller(tenant.organization_id, ("*",), Actor("user:x"), Role.MEMBER, clock.now)
    with pytest.raises(NotPermitted):
        services.key_policies.set_policy(member, KeyPolicy(stale_days=30))
    stale_admin = Caller(
        tenant.organization_id, ("*",), Actor("user:y"), Role.ADMIN, clock.now - timedelta(days=1)
    )
    with pytest.raises(ReauthenticationRequired):
        services.key_policies.set_policy(stale_admin, KeyPolicy(stale_days=30))


def test_a_change_is_audited_with_before_and_after(services: Services, tenant: Tenant) -> None:
    caller = caller_of(tenant)
    services.key_policies.set_policy(caller, KeyPolicy(stale_days=30))
    services.key_policies.set_policy(caller, KeyPolicy(stale_days=30))  # no change: no event
    with services.database.read() as session:
        audited = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "organization.key_policy_changed")
        ).all()
    assert len(audited) == 1
    assert audited[0].details["to"]["stale_days"] == 30
    assert audited[0].details["from"]["stale_days"] is None
    assert len(events(services, "organization.key_policy_changed")) == 1


# -- the scheduler ---------------------------------------------------------------------


def test_expiring_7d_then_1d_then_expired_each_once(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    key = services.keys.create(
        caller, tenant.project_id, name="ci", expires_at=clock.now + timedelta(days=10)
    )
    services.scheduler.run_once()
    assert events(services, "key.expiring") == []
    clock.advance(timedelta(days=3, hours=1))
    services.scheduler.run_once()
    services.scheduler.run_once()
    expiring = events(services, "key.expiring")
    assert [e.data["details"]["expires_in_days"] for e in expiring] == [7]
    assert key_ids(expiring) == [key.record.id]
    clock.advance(timedelta(days=6))
    services.scheduler.run_once()
    services.scheduler.run_once(clock.now + timedelta(minutes=1))
    assert [e.data["details"]["expires_in_days"] for e in events(services, "key.expiring")] == [
        7,
        1,
    ]
    clock.advance(timedelta(days=1))
    services.scheduler.run_once()
    services.scheduler.run_once()
    assert key_ids(events(services, "key.expired")) == [key.record.id]


def test_a_canary_key_is_left_alone(services: Services, tenant: Tenant, clock: Clock) -> None:
    caller = caller_of(tenant)
    key = services.keys.create(
        caller, tenant.project_id, name="trap", expires_at=clock.now + timedelta(hours=2)
    )
    with services.database.write() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.id == key.record.id)).one()
        row.canary = True
    services.key_policies.set_policy(caller, KeyPolicy(stale_days=8, stale_disable=True))
    clock.advance(timedelta(days=30))
    services.scheduler.run_once(clock.now - timedelta(days=29, hours=23))
    services.scheduler.run_once()
    assert events(services, "key.expiring") == []
    assert [
        e for e in events(services, "key.auto_disabled") if key_ids([e]) == [key.record.id]
    ] == []


def test_stale_timeline_warn_disable_revoke_with_a_matching_dry_run(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    key = services.keys.create(caller, tenant.project_id, name="forgotten")
    policy = KeyPolicy(stale_days=30, stale_disable=True, stale_revoke_days=10)
    services.key_policies.set_policy(caller, policy)
    keys = (key.record.id, tenant.key_id)

    clock.advance(timedelta(days=23, hours=1))
    preview = services.key_policies.dry_run(caller, policy)
    warn = next(group for group in preview.groups if group.action is Stage.WARN)
    assert sorted(k.id for k in warn.keys) == sorted(keys)
    assert warn.total == 2
    services.scheduler.run_once()
    services.scheduler.run_once()
    unused = events(services, "key.unused")
    assert sorted(key_ids(unused)) == sorted(keys)
    assert unused[0].data["details"]["unused_days"] == 23
    assert unused[0].data["details"]["action"] == "disable"

    clock.advance(timedelta(days=7))
    preview = services.key_policies.dry_run(caller, policy)
    disable = next(group for group in preview.groups if group.action is Stage.DISABLE)
    assert sorted(k.id for k in disable.keys) == sorted(keys)
    services.scheduler.run_once()
    services.scheduler.run_once()
    assert sorted(key_ids(events(services, "key.auto_disabled"))) == sorted(keys)
    assert services.verifier.verify(key.secret.reveal()).code is GrantCode.DISABLED
    with services.database.read() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.id == key.record.id)).one()
        assert row.disabled_reason == "stale"
        audited = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "key.auto_disabled", AuditEvent.target_id == key.record.id
            )
        ).all()
    assert [event.actor for event in audited] == ["policy"]

    # A person enables the management key again: that is activity, it stays enabled.
    services.keys.update(caller, tenant.key_id, KeyChanges(enabled=True))
    with services.database.read() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.id == tenant.key_id)).one()
        assert row.disabled_reason is None
        assert row.disabled_at is None
    services.scheduler.run_once()
    assert len(events(services, "key.auto_disabled")) == 2

    clock.advance(timedelta(days=10))
    preview = services.key_policies.dry_run(caller, policy)
    revoke = next(group for group in preview.groups if group.action is Stage.REVOKE)
    assert [k.id for k in revoke.keys] == [key.record.id]
    services.scheduler.run_once()
    services.scheduler.run_once()
    assert key_ids(events(services, "key.auto_revoked")) == [key.record.id]
    assert services.verifier.verify(key.secret.reveal()).code is GrantCode.REVOKED
    assert services.verifier.verify(tenant.key).code is GrantCode.VALID


def test_the_dry_run_lists_keys_without_expiry_and_changes_nothing(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    long = services.keys.create(
        caller, tenant.project_id, name="long", expires_at=clock.now + timedelta(days=400)
    )
    short = services.keys.create(
        caller, tenant.project_id, name="short", expires_at=clock.now + timedelta(days=5)
    )
    preview = services.key_policies.dry_run(caller, KeyPolicy(max_lifetime_seconds=90 * DAY))
    groups = {group.action: group for group in preview.groups}
    assert {k.id for k in groups[Stage.NO_EXPIRY].keys} == {tenant.key_id}
    assert {k.id for k in groups[Stage.BEYOND_MAX].keys} == {long.record.id}
    assert short.record.id not in {k.id for g in preview.groups for k in g.keys}
    assert services.key_policies.policy(caller) == KeyPolicy()


def test_a_report_only_policy_warns_once_and_never_disables(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    key = services.keys.create(caller, tenant.project_id, name="idle")
    policy = KeyPolicy(stale_days=30)
    services.key_policies.set_policy(caller, policy)
    clock.advance(timedelta(days=31))
    preview = services.key_policies.dry_run(caller, policy)
    report = next(group for group in preview.groups if group.action is Stage.REPORT)
    assert key.record.id in {k.id for k in report.keys}
    assert Stage.DISABLE not in {group.action for group in preview.groups}
    services.scheduler.run_once()
    services.scheduler.run_once()
    warned = [e for e in events(services, "key.unused") if key_ids([e]) == [key.record.id]]
    assert len(warned) == 1
    assert warned[0].data["details"]["action"] == "report"
    assert events(services, "key.auto_disabled") == []
    assert services.verifier.verify(key.secret.reveal()).code is GrantCode.VALID


def test_a_key_expiring_within_a_day_gets_only_the_one_day_warning(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    services.keys.create(
        caller, tenant.project_id, name="short", expires_at=clock.now + timedelta(hours=12)
    )
    services.scheduler.run_once()
    services.scheduler.run_once()
    assert [e.data["details"]["expires_in_days"] for e in events(services, "key.expiring")] == [1]


def test_moving_an_expiry_warns_again_for_the_new_one(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    key = services.keys.create(
        caller, tenant.project_id, name="moved", expires_at=clock.now + timedelta(days=5)
    )
    services.scheduler.run_once()
    services.keys.update(
        caller, key.record.id, KeyChanges(expires_at=clock.now + timedelta(days=6))
    )
    services.scheduler.run_once()
    assert len(events(services, "key.expiring")) == 2


def test_a_rolled_keys_grace_period_end_is_not_announced(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    old = services.keys.create(caller, tenant.project_id, name="old")
    new = services.keys.roll(caller, old.record.id, grace=timedelta(hours=1))
    services.scheduler.run_once()
    clock.advance(timedelta(hours=2))
    services.scheduler.run_once()
    assert events(services, "key.expiring") == []
    assert events(services, "key.expired") == []
    assert new.record.id != old.record.id


def test_rolling_a_key_that_expires_past_the_maximum_caps_the_new_one(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    old = services.keys.create(
        caller, tenant.project_id, name="long", expires_at=clock.now + timedelta(days=400)
    )
    services.key_policies.set_policy(caller, KeyPolicy(max_lifetime_seconds=30 * DAY))
    new = services.keys.roll(caller, old.record.id)
    assert new.record.expires_at == clock.now + timedelta(days=30)
