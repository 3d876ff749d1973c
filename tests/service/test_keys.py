from __future__ import annotations

from datetime import timedelta

import pytest

from keyplane.core.errors import InvalidInput, NotPermitted, ObjectNotFound, StateConflict
from keyplane.core.grant import GrantCode, KeyStatus
from keyplane.core.keys import KeyFormat, hash_key
from keyplane.service.keys.lifecycle import KeyChanges
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey
from tests.support import Clock, Tenant


def caller_of(tenant: Tenant, *scopes: str) -> Caller:
    return Caller(tenant.organization_id, scopes or ("*",), Actor("key:test"))


def test_create_returns_the_value_once_and_stores_only_its_hash(
    services: Services, tenant: Tenant
) -> None:
    created = services.keys.create(
        caller_of(tenant), tenant.project_id, name="ci", scopes=["keys:read"]
    )
    value = created.secret.reveal()
    assert KeyFormat().is_key(value)
    assert created.record.hint == f"kp_...{value[-4:]}"
    with services.database.read() as session:
        row = session.get_one(ApiKey, _pk(services, created.record.id))
        stored = [str(getattr(row, column.key)) for column in ApiKey.__mapper__.column_attrs]
    assert row.key_hash == hash_key(value)
    assert all(value not in field for field in stored)
    assert created.record.status is KeyStatus.ACTIVE
    assert created.record.scopes == ("keys:read",)


def test_get_never_returns_the_value(services: Services, tenant: Tenant) -> None:
    created = services.keys.create(caller_of(tenant), tenant.project_id, name="ci")
    record = services.keys.get(caller_of(tenant), created.record.id)
    assert created.secret.reveal() not in repr(record)


def test_if_key_in_another_organization_then_not_found(
    services: Services, tenant: Tenant, other_tenant: Tenant
) -> None:
    with pytest.raises(ObjectNotFound):
        services.keys.get(caller_of(other_tenant), tenant.key_id)
    with pytest.raises(ObjectNotFound):
        services.keys.revoke(caller_of(other_tenant), tenant.key_id)
    with pytest.raises(ObjectNotFound):
        services.keys.create(caller_of(other_tenant), tenant.project_id, name="sneaky")


def test_if_caller_lacks_a_scope_then_it_cannot_grant_it(
    services: Services, tenant: Tenant
) -> None:
    limited = caller_of(tenant, "keys:write", "keys:read")
    with pytest.raises(NotPermitted) as raised:
        services.keys.create(limited, tenant.project_id, name="escalate", scopes=["*"])
    assert raised.value.code == GrantCode.INSUFFICIENT_SCOPE
    created = services.keys.create(limited, tenant.project_id, name="ok", scopes=["keys:read"])
    assert created.record.scopes == ("keys:read",)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("name", "", id="empty-name"),
        pytest.param("name", "x" * 201, id="long-name"),
        pytest.param("name", "bad\x00name", id="control-char-name"),
        pytest.param("scopes", ["Keys:Read"], id="uppercase-scope"),
        pytest.param("ip_allowlist", ["10.0.0.1/8"], id="host-bits-in-cidr"),
        pytest.param("metadata", {"blob": "x" * 20_000}, id="huge-metadata"),
    ],
)
def test_if_input_is_bad_then_invalid_input(
    services: Services, tenant: Tenant, field: str, value: object
) -> None:
    arguments: dict[str, object] = {"name": "ok", field: value}
    with pytest.raises(InvalidInput):
        services.keys.create(caller_of(tenant), tenant.project_id, **arguments)  # type: ignore[arg-type]


def test_if_expiry_in_the_past_then_invalid(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    with pytest.raises(InvalidInput):
        services.keys.create(caller_of(tenant), tenant.project_id, name="x", expires_at=clock.now)


def test_list_filters_by_status_and_paginates_newest_first(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    ids = [
        services.keys.create(caller, tenant.project_id, name=f"k{i}").record.id for i in range(5)
    ]
    services.keys.revoke(caller, ids[0])
    services.keys.update(caller, ids[1], KeyChanges(enabled=False))
    services.keys.update(caller, ids[2], KeyChanges(expires_at=clock.now + timedelta(minutes=1)))
    clock.advance(timedelta(minutes=2))

    def listed(status: KeyStatus | None) -> set[str]:
        return {
            key.id for key in services.keys.list(caller, tenant.project_id, status=status).items
        }

    assert listed(KeyStatus.REVOKED) == {ids[0]}
    assert listed(KeyStatus.DISABLED) == {ids[1]}
    assert listed(KeyStatus.EXPIRED) == {ids[2]}
    assert listed(KeyStatus.ACTIVE) == {ids[3], ids[4], tenant.key_id}
    assert len(listed(None)) == 6

    seen: list[str] = []
    cursor = None
    while True:
        page = services.keys.list(caller, tenant.project_id, limit=2, cursor=cursor)
        seen += [key.id for key in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [*reversed(ids), tenant.key_id]


def test_update_changes_only_what_is_given(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    created = services.keys.create(
        caller, tenant.project_id, name="a", scopes=["keys:read"], metadata={"team": "x"}
    )
    updated = services.keys.update(caller, created.record.id, KeyChanges(name="b"))
    assert (updated.name, updated.scopes, dict(updated.metadata)) == (
        "b",
        ("keys:read",),
        {"team": "x"},
    )
    later = clock.now + timedelta(days=1)
    updated = services.keys.update(
        caller,
        created.record.id,
        KeyChanges(expires_at=later, metadata={}, ip_allowlist=["10.0.0.0/8"]),
    )
    assert updated.expires_at == later
    assert dict(updated.metadata) == {}
    assert updated.ip_allowlist == ("10.0.0.0/8",)
    assert (
        services.keys.update(caller, created.record.id, KeyChanges(expires_at=None)).expires_at
        is None
    )


def test_revoke_is_permanent_and_idempotent(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    created = services.keys.create(caller, tenant.project_id, name="a")
    first = services.keys.revoke(caller, created.record.id)
    clock.advance(timedelta(seconds=5))
    second = services.keys.revoke(caller, created.record.id)
    assert first.status is second.status is KeyStatus.REVOKED
    assert first.revoked_at == second.revoked_at
    with pytest.raises(StateConflict):
        services.keys.update(caller, created.record.id, KeyChanges(enabled=True))
    with pytest.raises(StateConflict):
        services.keys.roll(caller, created.record.id)
    assert services.verifier.verify(created.secret.reveal()).code is GrantCode.REVOKED


def test_roll_copies_settings_and_ends_the_old_key_after_grace(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = caller_of(tenant)
    old = services.keys.create(
        caller,
        tenant.project_id,
        name="svc",
        scopes=["keys:read"],
        metadata={"a": 1},
        ip_allowlist=["10.0.0.0/8"],
    )
    new = services.keys.roll(caller, old.record.id, grace=timedelta(hours=1))
    assert new.secret != old.secret
    assert new.record.rolled_from_id == old.record.id
    assert (
        new.record.name,
        new.record.scopes,
        dict(new.record.metadata),
        new.record.ip_allowlist,
    ) == (
        "svc",
        ("keys:read",),
        {"a": 1},
        ("10.0.0.0/8",),
    )
    assert services.keys.get(caller, old.record.id).expires_at == clock.now + timedelta(hours=1)
    assert services.verifier.verify(old.secret.reveal(), client_ip=None).code is GrantCode.FORBIDDEN
    clock.advance(timedelta(hours=1))
    assert services.verifier.verify(old.secret.reveal()).code is GrantCode.EXPIRED


def test_roll_with_zero_grace_ends_the_old_key_now(services: Services, tenant: Tenant) -> None:
    caller = caller_of(tenant)
    old = services.keys.create(caller, tenant.project_id, name="svc")
    new = services.keys.roll(caller, old.record.id, grace=timedelta(0))
    assert services.verifier.verify(old.secret.reveal()).code is GrantCode.EXPIRED
    assert services.verifier.verify(new.secret.reveal()).code is GrantCode.VALID


def test_roll_keeps_an_earlier_expiry(services: Services, tenant: Tenant, clock: Clock) -> None:
    caller = caller_of(tenant)
    soon = clock.now + timedelta(minutes=5)
    old = services.keys.create(caller, tenant.project_id, name="svc", expires_at=soon)
    services.keys.roll(caller, old.record.id)
    assert services.keys.get(caller, old.record.id).expires_at == soon


def _pk(services: Services, key_id: str) -> int:
    from sqlalchemy import select

    with services.database.read() as session:
        return session.scalars(select(ApiKey.pk).where(ApiKey.id == key_id)).one()
