"""TOTP, recovery codes, the second-factor stage of sessions and sudo mode, in the service."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select, update

from keyplane.config import Settings
from keyplane.core.errors import AuthenticationFailed, ReauthenticationRequired, StateConflict
from keyplane.service.accounts.sessions import NewSession, SessionStage
from keyplane.service.records import Caller
from keyplane.service.services import Services
from keyplane.storage.models import AuditEvent, ConsoleSession, Organization, RecoveryCode
from tests.support import Clock, Tenant

PASSWORD = "correct horse battery"


@pytest.fixture
def person(services: Services) -> Tenant:
    return Tenant.of(
        services.bootstrap(
            organization_name="Acme",
            project_name="Default",
            owner_email="owner@acme.test",
            owner_password=PASSWORD,
        )
    )


def sign_in(services: Services, ip: str = "203.0.113.9") -> NewSession:
    return services.sessions.sign_in("owner@acme.test", PASSWORD, client_ip=ip)


def caller_of(started: NewSession) -> Caller:
    return started.record.caller("203.0.113.9")


def enrol(services: Services, clock: Clock, started: NewSession) -> tuple[pyotp.TOTP, list[str]]:
    user_id = started.record.user_id
    enrolment = services.factors.begin_totp(caller_of(started), user_id)
    assert enrolment.secret not in repr(enrolment)
    totp = pyotp.TOTP(enrolment.secret)
    codes = services.factors.confirm_totp(caller_of(started), user_id, totp.at(clock.now))
    assert codes is not None
    assert len(codes.codes) == 10
    assert codes.codes[0] not in repr(codes)
    return totp, list(codes.codes)


def actions(services: Services) -> list[str]:
    with services.database.read() as session:
        return [event.action for event in session.scalars(select(AuditEvent))]


def test_a_password_alone_gives_a_pending_session(
    services: Services, clock: Clock, person: Tenant
) -> None:
    started = sign_in(services)
    assert started.record.stage == SessionStage.ACTIVE
    enrol(services, clock, started)
    pending = sign_in(services)
    assert pending.record.stage == SessionStage.SECOND_FACTOR
    assert pending.record.expires_at - clock.now <= timedelta(minutes=10)
    assert services.sessions.resolve(pending.token) is None  # not signed in
    assert services.sessions.resolve(pending.token, stages=(SessionStage.SECOND_FACTOR,))


def test_a_code_works_once_and_only_in_its_window(
    services: Services, clock: Clock, person: Tenant
) -> None:
    totp, _ = enrol(services, clock, sign_in(services))
    pending = sign_in(services)
    # The confirmation spent this step's code: replaying it fails.
    with pytest.raises(AuthenticationFailed):
        services.sessions.complete_second_factor(pending.token, totp.at(clock.now))
    clock.advance(timedelta(seconds=30))
    done = services.sessions.complete_second_factor(pending.token, totp.at(clock.now))
    assert done.record.stage == SessionStage.ACTIVE
    assert done.token != pending.token
    assert services.sessions.resolve(done.token) is not None
    # The pending token is gone.
    assert services.sessions.resolve(pending.token, stages=(SessionStage.SECOND_FACTOR,)) is None
    # The same code again, from a second pending session: refused (replay).
    second = sign_in(services)
    with pytest.raises(AuthenticationFailed):
        services.sessions.complete_second_factor(second.token, totp.at(clock.now))
    # The previous step's code is within the window but older than the last used step.
    with pytest.raises(AuthenticationFailed):
        services.sessions.complete_second_factor(
            second.token, totp.at(clock.now - timedelta(seconds=30))
        )
    # Two steps ahead is outside the window.
    with pytest.raises(AuthenticationFailed):
        services.sessions.complete_second_factor(
            second.token, totp.at(clock.now + timedelta(seconds=90))
        )
    # One step ahead is inside it.
    services.sessions.complete_second_factor(
        second.token, totp.at(clock.now + timedelta(seconds=30))
    )
    assert actions(services).count("user.second_factor_failed") == 4


def test_wrong_codes_are_throttled(services: Services, clock: Clock, person: Tenant) -> None:
    totp, _ = enrol(services, clock, sign_in(services))
    pending = sign_in(services)
    clock.advance(timedelta(seconds=60))
    from keyplane.core.errors import TooManyAttempts

    refused = []
    for _ in range(10):
        try:
            services.sessions.complete_second_factor(pending.token, "000000")
        except (AuthenticationFailed, TooManyAttempts) as error:
            refused.append(type(error).__name__)
    assert refused[0] == "AuthenticationFailed"
    assert refused[-1] == "TooManyAttempts"
    # Throttled: even the right code is refused now.
    with pytest.raises(TooManyAttempts):
        services.sessions.complete_second_factor(pending.token, totp.at(clock.now))


def test_a_recovery_code_works_once(services: Services, clock: Clock, person: Tenant) -> None:
    _, codes = enrol(services, clock, sign_in(services))
    with services.database.read() as session:
        stored = {row.code_hash for row in session.scalars(select(RecoveryCode))}
    assert len(stored) == 10
    assert not any(code in stored or code.replace("-", "") in stored for code in codes)
    pending = sign_in(services)
    done = services.sessions.complete_second_factor(pending.token, codes[3])
    assert done.record.method == "recovery_code"
    again = sign_in(services)
    with pytest.raises(AuthenticationFailed):
        services.sessions.complete_second_factor(again.token, codes[3])
    assert actions(services).count("user.recovery_code_used") == 1
    assert services.factors.status(person.user_id).recovery_codes_left == 9


def test_regenerating_codes_needs_sudo_and_replaces_them(
    services: Services, clock: Clock, person: Tenant
) -> None:
    started = sign_in(services)
    _, codes = enrol(services, clock, started)
    clock.advance(timedelta(minutes=16))
    with pytest.raises(ReauthenticationRequired):
        services.factors.regenerate_recovery_codes(caller_of(started), person.user_id)
    services.sessions.reauthenticate(started.record, password=PASSWORD)
    fresh = services.sessions.resolve(started.token)
    assert fresh is not None
    new = services.factors.regenerate_recovery_codes(fresh.caller(), person.user_id)
    assert not set(new.codes) & set(codes)
    pending = sign_in(services)
    with pytest.raises(AuthenticationFailed):
        services.sessions.complete_second_factor(pending.token, codes[0])
    services.sessions.complete_second_factor(pending.token, new.codes[0])


def test_sudo_expires_and_reauthentication_renews_it(
    services: Services, clock: Clock, person: Tenant
) -> None:
    started = sign_in(services)
    caller = caller_of(started)
    services.keys.create(caller, person.project_id, name="admin", scopes=["*"])
    clock.advance(timedelta(minutes=14, seconds=59))
    services.keys.create(caller, person.project_id, name="admin 2", scopes=["keys:write"])
    clock.advance(timedelta(seconds=1))
    for scopes in (["*"], ["keys:write"], ["keys:*"]):
        with pytest.raises(ReauthenticationRequired) as raised:
            services.keys.create(caller, person.project_id, name="admin 3", scopes=scopes)
        assert raised.value.status == 403
        assert raised.value.problem_type == "reauthentication-required"
    services.keys.create(caller, person.project_id, name="reader", scopes=["keys:read"])
    key = services.keys.create(caller, person.project_id, name="plain")
    with pytest.raises(ReauthenticationRequired):
        services.keys.revoke(caller, key.record.id)
    with pytest.raises(ReauthenticationRequired):
        services.keys.roll(caller, key.record.id)
    with pytest.raises(ReauthenticationRequired):
        services.members.change_role(caller, person.user_id, "admin")
    with pytest.raises(ReauthenticationRequired):
        services.members.remove(caller, person.user_id)
    with pytest.raises(AuthenticationFailed):
        services.sessions.reauthenticate(started.record, password="wrong password")
    services.sessions.reauthenticate(started.record, password=PASSWORD)
    renewed = services.sessions.resolve(started.token)
    assert renewed is not None
    assert renewed.authenticated_at == clock.now
    services.keys.revoke(renewed.caller(), key.record.id)
    assert "user.reauthenticated" in actions(services)
    # A key (no role) is not a person: sudo mode does not apply to it.
    management = Caller(person.organization_id, ("*",), caller.actor)
    services.keys.create(management, person.project_id, name="by key", scopes=["*"])


def test_removing_the_factor_needs_sudo_and_takes_the_codes(
    services: Services, clock: Clock, person: Tenant
) -> None:
    started = sign_in(services)
    enrol(services, clock, started)
    clock.advance(timedelta(minutes=20))
    with pytest.raises(ReauthenticationRequired):
        services.factors.remove_totp(caller_of(started), person.user_id)
    assert services.factors.has_factor(person.user_id)
    with services.database.write() as session:
        session.execute(update(ConsoleSession).values(authenticated_at=clock.now))
    services.factors.remove_totp(caller_of(sign_in_fresh(services, started)), person.user_id)
    status = services.factors.status(person.user_id)
    assert not status.has_factor
    assert status.recovery_codes_left == 0
    assert sign_in(services).record.stage == SessionStage.ACTIVE


def sign_in_fresh(services: Services, started: NewSession) -> NewSession:
    record = services.sessions.resolve(started.token)
    assert record is not None
    return NewSession(started.token, record)


def test_a_confirmed_factor_cannot_be_replaced_without_removing_it(
    services: Services, clock: Clock, person: Tenant
) -> None:
    started = sign_in(services)
    enrol(services, clock, started)
    with pytest.raises(StateConflict):
        services.factors.begin_totp(caller_of(started), person.user_id)


def test_an_organization_requiring_a_factor_limits_a_user_without_one(
    services: Services, clock: Clock, person: Tenant
) -> None:
    with services.database.write() as session:
        session.execute(update(Organization).values(require_mfa=True))
    pending = sign_in(services)
    assert pending.record.stage == SessionStage.ENROL_FACTOR
    assert services.sessions.resolve(pending.token) is None
    with pytest.raises(StateConflict):
        services.sessions.finish_enrolment(pending.token)
    enrolment = services.factors.begin_totp(pending.record.caller(), person.user_id)
    services.factors.confirm_totp(
        pending.record.caller(), person.user_id, pyotp.TOTP(enrolment.secret).at(clock.now)
    )
    done = services.sessions.finish_enrolment(pending.token)
    assert done.record.stage == SessionStage.ACTIVE
    assert services.sessions.resolve(done.token) is not None


def test_two_concurrent_sign_ins_with_one_code_let_one_through(
    services: Services, clock: Clock, person: Tenant, settings: Settings
) -> None:
    """Each thread has its own ``Services`` (as separate processes would: no shared
    throttle gate), so only the database's conditional UPDATE stands between them."""
    totp, _ = enrol(services, clock, sign_in(services))
    # Refused racers count as failed attempts: a budget that does not get in the way.
    roomy = dataclasses.replace(
        settings, login_account_limit="1000 per minute", login_ip_limit="1000 per minute"
    )
    others = [Services.open(roomy, clock=clock) for _ in range(4)]
    try:
        instances = others
        for _round in range(4):
            clock.advance(timedelta(seconds=30))
            code = totp.at(clock.now)
            results = race(instances, code)
            assert results.count("ok") == 1, results
            # The same code once more, after the race: refused everywhere.
            assert race(instances, code).count("ok") == 0
    finally:
        for other in others:
            other.close()


def race(instances: list[Services], code: str) -> list[str]:
    pendings = [sign_in(instance, ip=f"198.51.100.{n}") for n, instance in enumerate(instances)]
    barrier = threading.Barrier(len(pendings))
    results: list[str] = []
    lock = threading.Lock()

    def attempt(instance: Services, token: str) -> None:
        barrier.wait()
        try:
            instance.sessions.complete_second_factor(token, code)
            outcome = "ok"
        except AuthenticationFailed:
            outcome = "refused"
        with lock:
            results.append(outcome)

    threads = [
        threading.Thread(target=attempt, args=(instance, pending.token))
        for instance, pending in zip(instances, pendings, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
