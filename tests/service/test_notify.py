"""Mail about events, to a real SMTP server: who gets it, muting, what it says."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from keyplane.config import Settings
from keyplane.core.errors import InvalidInput
from keyplane.service.audit import record_account_event
from keyplane.service.records import Actor, Caller, Role
from keyplane.service.services import Services
from keyplane.storage.models import Event, Membership, User
from tests.mail import MailServer, mail_server  # noqa: F401 - the fixture
from tests.support import Clock, Tenant


@pytest.fixture
def settings(tmp_path: Path, database_url: str, mail_server: MailServer) -> Settings:  # noqa: F811
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        smtp_url=mail_server.url,
        public_url="https://keys.example.test",
    )


def add_member(services: Services, tenant: Tenant, email: str, role: Role, clock: Clock) -> str:
    user_id = f"usr_{email.split('@')[0][:4].ljust(4, 'x')}AAAAAAAAAAAA"
    with services.database.write() as session:
        session.add(User(id=user_id, email=email, password_hash=None, created_at=clock()))
        session.flush()
        session.add(
            Membership(
                organization_id=tenant.organization_id,
                user_id=user_id,
                role=role.value,
                created_at=clock(),
            )
        )
    return user_id


def dispatch(services: Services, event_type: str) -> None:
    """Hand every event of ``event_type`` to the notifier, as the dispatcher does."""
    with services.database.write() as session:
        for event in session.scalars(select(Event).where(Event.type == event_type)):
            services.notifier(session, event)
    services.outbox.run_once()


def test_a_revoked_key_is_mailed_to_owners_admins_and_its_creator_unless_muted(
    services: Services,
    tenant: Tenant,
    clock: Clock,
    mail_server: MailServer,  # noqa: F811
) -> None:
    admin = add_member(services, tenant, "admin@acme.test", Role.ADMIN, clock)
    member = add_member(services, tenant, "mia@acme.test", Role.MEMBER, clock)
    add_member(services, tenant, "bystander@acme.test", Role.MEMBER, clock)
    as_member = Caller(
        tenant.organization_id,
        (),
        Actor(f"user:{member}"),
        role=Role.MEMBER,
        authenticated_at=clock(),
    )
    created = services.keys.create(as_member, tenant.project_id, name="<b>mia's CI</b>")
    services.keys.revoke(as_member, created.record.id)
    dispatch(services, "key.created")  # not a mailed type
    assert mail_server.received == []
    services.notifications.set_muted(
        Caller(tenant.organization_id, (), Actor(f"user:{admin}"), role=Role.ADMIN),
        admin,
        ["key.revoked"],
    )
    dispatch(services, "key.revoked")
    assert sorted(r for m in mail_server.received for r in m.to) == [
        "mia@acme.test",
        "owner@acme.test",
    ]
    [mail] = mail_server.to("owner@acme.test")
    assert mail.subject == f"[Keyplane] A key was revoked: {created.record.hint}"
    assert f"https://keys.example.test/console/keys/{created.record.id}" in mail.text
    assert "<b>mia's CI</b>" in mail.text
    assert "<b>mia" not in mail.html
    assert "&lt;b&gt;mia" in mail.html
    assert created.secret.reveal() not in mail.text + mail.html


def test_only_mailed_types_can_be_muted(services: Services, tenant: Tenant) -> None:
    caller = Caller(tenant.organization_id, (), Actor(f"user:{tenant.user_id}"), role=Role.OWNER)
    with pytest.raises(InvalidInput):
        services.notifications.set_muted(caller, tenant.user_id, ["key.created"])
    with pytest.raises(InvalidInput):
        services.notifications.set_muted(caller, tenant.user_id, ["no.such"])
    assert services.notifications.set_muted(caller, tenant.user_id, ["key.expiring"]) == {
        "key.expiring"
    }
    assert services.notifications.muted(caller, tenant.user_id) == {"key.expiring"}


def test_an_account_event_is_mailed_to_that_person_once(
    services: Services,
    tenant: Tenant,
    other_tenant: Tenant,
    clock: Clock,
    mail_server: MailServer,  # noqa: F811
) -> None:
    admin = add_member(services, tenant, "admin@acme.test", Role.ADMIN, clock)
    with services.database.write() as session:  # the admin is in both organizations
        session.add(
            Membership(
                organization_id=other_tenant.organization_id,
                user_id=admin,
                role=Role.MEMBER.value,
                created_at=clock(),
            )
        )
    with services.database.write() as session:
        record_account_event(
            session, admin, Actor(f"user:{admin}"), "user.password_changed", at=clock()
        )
    dispatch(services, "user.password_changed")
    assert [r for m in mail_server.received for r in m.to] == ["admin@acme.test"]
    [mail] = mail_server.received
    assert mail.subject == "[Keyplane] Your password was changed"
    assert "about your own account" in mail.text
