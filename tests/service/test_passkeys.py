"""Passkeys: registration, passwordless sign-in, second factor, and every refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from keyplane.core.errors import AuthenticationFailed, InvalidInput, ReauthenticationRequired
from keyplane.service.accounts.passkeys import PasskeyRefused, RelyingParty
from keyplane.service.accounts.sessions import NewSession, SessionStage
from keyplane.service.services import Services
from keyplane.storage.models import AuditEvent, AuthChallenge, WebAuthnCredential
from tests.soft_authenticator import SoftAuthenticator
from tests.support import Clock, Tenant

PASSWORD = "correct horse battery"


def make_person(services: Services, email: str, organization: str) -> Tenant:
    return Tenant.of(
        services.bootstrap(
            organization_name=organization,
            project_name="Default",
            owner_email=email,
            owner_password=PASSWORD,
        )
    )


@pytest.fixture
def person(services: Services) -> Tenant:
    return make_person(services, "owner@acme.test", "Acme")


def authenticator(services: Services) -> SoftAuthenticator:
    party = services.passkeys.relying_party
    return SoftAuthenticator(party.rp_id, party.origin)


def register(services: Services, email: str = "owner@acme.test") -> SoftAuthenticator:
    started = services.sessions.sign_in(email, PASSWORD)
    caller = started.record.caller()
    device = authenticator(services)
    ceremony = services.passkeys.begin_registration(caller, started.record.user_id)
    assert ceremony.token not in repr(ceremony)
    done = services.passkeys.finish_registration(
        caller, started.record.user_id, ceremony.token, device.create(ceremony.options_json), "Key"
    )
    assert done.recovery_codes is not None  # the first factor
    return device


def passwordless(services: Services, device: SoftAuthenticator, **lie: object) -> NewSession:
    ceremony = services.passkeys.begin_sign_in()
    return services.passkeys.finish_sign_in(
        ceremony.token,
        device.get(ceremony.options_json, **lie),  # type: ignore[arg-type]
    )


def refusals(services: Services) -> list[AuditEvent]:
    with services.database.read() as session:
        return list(
            session.scalars(select(AuditEvent).where(AuditEvent.action == "user.passkey_refused"))
        )


def test_the_relying_party_comes_from_the_console_url() -> None:
    assert RelyingParty.from_url("https://keys.example.com/") == RelyingParty(
        "keys.example.com", "https://keys.example.com"
    )
    assert RelyingParty.from_url("https://keys.example.com:8443") == RelyingParty(
        "keys.example.com", "https://keys.example.com:8443"
    )
    assert RelyingParty.from_url("http://127.0.0.1:8000") == RelyingParty(
        "localhost", "http://localhost:8000"
    )


def test_register_then_sign_in_without_a_password(
    services: Services, person: Tenant, clock: Clock
) -> None:
    device = register(services)
    with services.database.read() as session:
        row = session.scalar(select(WebAuthnCredential))
        assert row is not None
        assert row.user_id == person.user_id
        challenges = session.scalars(select(AuthChallenge)).all()
        assert all(challenge.used_at is not None for challenge in challenges)
        assert all("challenge" not in challenge.data for challenge in challenges)  # sealed
    started = passwordless(services, device)
    assert started.record.stage == SessionStage.ACTIVE
    assert started.record.method == "passkey"
    # The password alone now needs the second factor; the passkey gives it.
    pending = services.sessions.sign_in("owner@acme.test", PASSWORD)
    assert pending.record.stage == SessionStage.SECOND_FACTOR
    ceremony = services.passkeys.begin_second_factor(pending.record)
    done = services.passkeys.finish_second_factor(
        pending.record, pending.token, ceremony.token, device.get(ceremony.options_json)
    )
    assert done.record.stage == SessionStage.ACTIVE


def test_a_challenge_is_used_once_and_expires(
    services: Services, person: Tenant, clock: Clock
) -> None:
    device = register(services)
    ceremony = services.passkeys.begin_sign_in()
    assertion = device.get(ceremony.options_json)
    services.passkeys.finish_sign_in(ceremony.token, assertion)
    with pytest.raises(PasskeyRefused):
        services.passkeys.finish_sign_in(ceremony.token, device.get(ceremony.options_json))
    late = services.passkeys.begin_sign_in()
    clock.advance(timedelta(minutes=6))
    with pytest.raises(PasskeyRefused):
        services.passkeys.finish_sign_in(late.token, device.get(late.options_json))


def test_a_sign_count_that_goes_back_is_refused(
    services: Services, person: Tenant, clock: Clock
) -> None:
    device = register(services)
    passwordless(services, device, sign_count=5)
    with pytest.raises(PasskeyRefused):
        passwordless(services, device, sign_count=5)
    with pytest.raises(PasskeyRefused):
        passwordless(services, device, sign_count=3)
    assert len(refusals(services)) == 2
    passwordless(services, device, sign_count=6)


def test_another_origin_is_refused_and_audited(
    services: Services, person: Tenant, clock: Clock
) -> None:
    device = register(services)
    with pytest.raises(PasskeyRefused):
        passwordless(services, device, origin="https://evil.test")
    assert len(refusals(services)) == 1
    passwordless(services, device)


def test_another_users_credential_is_refused_and_audited(
    services: Services, person: Tenant, clock: Clock
) -> None:
    mine = register(services)
    make_person(services, "other@globex.test", "Globex")
    theirs = register(services, "other@globex.test")
    pending = services.sessions.sign_in("owner@acme.test", PASSWORD)
    ceremony = services.passkeys.begin_second_factor(pending.record)
    with pytest.raises(PasskeyRefused):
        services.passkeys.finish_second_factor(
            pending.record, pending.token, ceremony.token, theirs.get(ceremony.options_json)
        )
    events = refusals(services)
    # In the audit log of the user signing in and of the credential's owner.
    organizations = {event.organization_id for event in events}
    assert person.organization_id in organizations
    assert len(organizations) == 2
    assert any(event.details.get("another_users_credential") for event in events)
    # A passwordless assertion naming another user than the credential's owner: refused.
    with pytest.raises(PasskeyRefused):
        passwordless(services, mine, user_handle=b"usr_someoneelse")
    # The right credential still works.
    ceremony = services.passkeys.begin_second_factor(pending.record)
    services.passkeys.finish_second_factor(
        pending.record, pending.token, ceremony.token, mine.get(ceremony.options_json)
    )


def test_registration_refuses_a_wrong_origin_and_needs_sudo(
    services: Services, person: Tenant, clock: Clock
) -> None:
    started = services.sessions.sign_in("owner@acme.test", PASSWORD)
    caller = started.record.caller()
    device = authenticator(services)
    ceremony = services.passkeys.begin_registration(caller, person.user_id)
    with pytest.raises(InvalidInput):
        services.passkeys.finish_registration(
            caller,
            person.user_id,
            ceremony.token,
            device.create(ceremony.options_json, origin="https://evil.test"),
            "Key",
        )
    assert not services.factors.has_factor(person.user_id)
    clock.advance(timedelta(minutes=16))
    with pytest.raises(ReauthenticationRequired):
        services.passkeys.begin_registration(caller, person.user_id)


@pytest.mark.parametrize("garbage", ["", "{", "[]", '{"rawId": 5}', '{"id": "x"}', "x" * 70000])
def test_garbage_is_refused_not_crashed_on(
    services: Services, person: Tenant, garbage: str
) -> None:
    register(services)
    ceremony = services.passkeys.begin_sign_in()
    with pytest.raises(AuthenticationFailed):
        services.passkeys.finish_sign_in(ceremony.token, garbage)
