"""The key list's status filter is SQL; the rule it must agree with is
``core.grant.key_status``. Every combination of the three inputs is tried,
the boundary (expiring exactly now) included, so the two spellings of the rule
cannot drift apart."""

from __future__ import annotations

import itertools
from datetime import timedelta

from sqlalchemy import update

from keyplane.core.grant import KeyStatus, key_status
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey
from tests.support import Tenant


def test_the_status_filter_lists_exactly_the_keys_the_grant_rule_gives_that_status(
    services: Services, tenant: Tenant
) -> None:
    caller = Caller(tenant.organization_id, ("*",), Actor("key:test"))
    now = services.clock()
    states = list(
        itertools.product(
            (None, now - timedelta(hours=1)),  # revoked_at
            (True, False),  # enabled
            (None, now - timedelta(hours=1), now, now + timedelta(hours=1)),  # expires_at
        )
    )
    project = services.projects.create_project(caller, "Statuses").id
    expected: dict[KeyStatus, set[str]] = {status: set() for status in KeyStatus}
    for revoked_at, enabled, expires_at in states:
        key_id = services.keys.create(caller, project, name="k").record.id
        with services.database.write() as session:
            session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(revoked_at=revoked_at, enabled=enabled, expires_at=expires_at)
            )
        expected[key_status(revoked_at, enabled, expires_at, services.clock())].add(key_id)
    assert all(expected.values()), "every status is reached by some state"
    for status, wanted in expected.items():
        listed = {
            record.id
            for record in services.keys.list(caller, project, status=status, limit=100).items
        }
        assert listed == wanted, status
        for record in services.keys.list(caller, project, status=status, limit=100).items:
            assert record.status is status
