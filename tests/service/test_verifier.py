from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_address

import pytest
from sqlalchemy import update

from keyplane.core.grant import GrantCode
from keyplane.service.keys.lifecycle import KeyChanges
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey
from tests.support import Clock, Tenant


@pytest.fixture
def caller(tenant: Tenant) -> Caller:
    return Caller(tenant.organization_id, ("*",), Actor("key:test"))


def test_if_valid_key_then_valid_with_its_identity(services: Services, tenant: Tenant) -> None:
    decision = services.verifier.verify(tenant.key)
    assert decision.code is GrantCode.VALID
    assert decision.key is not None
    assert (decision.key.key_id, decision.key.project_id) == (tenant.key_id, tenant.project_id)


def test_if_malformed_key_then_not_found_without_touching_storage(
    services: Services, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(_hash: str) -> None:
        raise AssertionError("storage was queried for a malformed key")

    monkeypatch.setattr(services.verifier, "load", fail)
    for bad in ["", "kp_", tenant.key[:-1] + ("A" if tenant.key[-1] != "A" else "B"), "x" * 5000]:
        assert services.verifier.verify(bad).code is GrantCode.NOT_FOUND


def test_if_well_formed_but_unknown_key_then_not_found(services: Services) -> None:
    assert (
        services.verifier.verify(services.settings.key_format.generate().reveal()).code
        is GrantCode.NOT_FOUND
    )


def test_cached_key_is_served_without_storage(
    services: Services, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.verifier.verify(tenant.key)
    monkeypatch.setattr(services.verifier, "load", lambda _hash: pytest.fail("cache miss"))
    assert services.verifier.verify(tenant.key).valid


def test_revocation_through_this_instance_takes_effect_at_once(
    services: Services, tenant: Tenant, caller: Caller
) -> None:
    created = services.keys.create(caller, tenant.project_id, name="x")
    value = created.secret.reveal()
    assert services.verifier.verify(value).valid  # now cached
    services.keys.revoke(caller, created.record.id)
    assert services.verifier.verify(value).code is GrantCode.REVOKED


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param(KeyChanges(enabled=False), GrantCode.DISABLED, id="disable"),
        pytest.param(KeyChanges(scopes=[]), GrantCode.INSUFFICIENT_SCOPE, id="drop-scope"),
        pytest.param(KeyChanges(ip_allowlist=["10.0.0.0/8"]), GrantCode.FORBIDDEN, id="allowlist"),
    ],
)
def test_updates_through_this_instance_take_effect_at_once(
    services: Services, tenant: Tenant, caller: Caller, change: KeyChanges, code: GrantCode
) -> None:
    created = services.keys.create(caller, tenant.project_id, name="x", scopes=["keys:read"])
    value = created.secret.reveal()
    client = ip_address("192.0.2.1")
    assert services.verifier.verify(value, required_scopes=["keys:read"], client_ip=client).valid
    services.keys.update(caller, created.record.id, change)
    assert (
        services.verifier.verify(value, required_scopes=["keys:read"], client_ip=client).code
        is code
    )


def test_a_change_made_elsewhere_is_seen_within_the_cache_ttl(
    services: Services, tenant: Tenant, caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = services.keys.create(caller, tenant.project_id, name="x")
    value = created.secret.reveal()
    now = [1000.0]
    monkeypatch.setattr(services.cache, "_clock", lambda: now[0])
    assert services.verifier.verify(value).valid
    with services.database.write() as session:  # another process revokes it
        session.execute(update(ApiKey).where(ApiKey.id == created.record.id).values(enabled=False))
    assert services.verifier.verify(value).valid  # still cached
    now[0] += services.settings.key_cache_ttl
    assert services.verifier.verify(value).code is GrantCode.DISABLED


def test_expiry_is_checked_on_every_call_even_when_cached(
    services: Services, tenant: Tenant, caller: Caller, clock: Clock
) -> None:
    created = services.keys.create(
        caller, tenant.project_id, name="x", expires_at=clock.now + timedelta(seconds=1)
    )
    assert services.verifier.verify(created.secret.reveal()).valid
    clock.advance(timedelta(seconds=1))
    assert services.verifier.verify(created.secret.reveal()).code is GrantCode.EXPIRED


def test_if_organization_differs_then_not_found(
    services: Services, tenant: Tenant, other_tenant: Tenant
) -> None:
    decision = services.verifier.verify(tenant.key, organization_id=other_tenant.organization_id)
    assert decision.code is GrantCode.NOT_FOUND
    assert decision.key is None


def test_verification_records_use_in_the_buffer_not_the_database(
    services: Services, tenant: Tenant, caller: Caller, clock: Clock
) -> None:
    services.verifier.verify(tenant.key, client_ip=ip_address("198.51.100.4"), user_agent="sdk/1.0")
    with services.database.read() as session:
        row = session.query(ApiKey).filter_by(id=tenant.key_id).one()
        assert row.last_used_at is None
    record = services.keys.get(caller, tenant.key_id)  # pending use is visible at once
    assert (record.last_used_at, record.last_used_ip, record.last_used_user_agent) == (
        clock.now,
        "198.51.100.4",
        "sdk/1.0",
    )
    assert services.usage.flush() == 1
    with services.database.read() as session:
        row = session.query(ApiKey).filter_by(id=tenant.key_id).one()
        assert (row.last_used_at, row.last_used_ip, row.last_used_user_agent) == (
            clock.now,
            "198.51.100.4",
            "sdk/1.0",
        )


def test_failed_verification_records_no_use(
    services: Services, tenant: Tenant, caller: Caller
) -> None:
    services.keys.update(caller, tenant.key_id, KeyChanges(enabled=False))
    services.verifier.verify(tenant.key)
    assert services.usage.pending(tenant.key_id) is None


async def _verify_async(services: Services, key: str) -> GrantCode:
    return (await services.verifier.verify_async(key)).code


def test_async_verification_matches_sync(services: Services, tenant: Tenant) -> None:
    import anyio

    assert anyio.run(_verify_async, services, tenant.key) is GrantCode.VALID  # miss: in a thread
    assert anyio.run(_verify_async, services, tenant.key) is GrantCode.VALID  # hit: on the loop
    assert anyio.run(_verify_async, services, "nonsense") is GrantCode.NOT_FOUND
