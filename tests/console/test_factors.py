"""Second factors, the factor step of sign-in, recovery codes and sudo mode, over HTTP."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from keyplane.service.services import Services
from keyplane.storage.models import (
    ApiKey,
    AuditEvent,
    ConsoleSession,
    Organization,
    TotpFactor,
    User,
)
from tests.console.conftest import PASSWORD, Browser
from tests.support import Clock

MakeBrowser = Callable[..., Browser]
_SECRET = re.compile(r"<code data-totp-secret>([A-Z2-7 ]+)</code>")
_CODES = re.compile(r"<li><code>([a-z2-7-]{19})</code></li>")


def enrol_totp(browser: Browser, clock: Clock) -> tuple[pyotp.TOTP, list[str]]:
    """Set up an authenticator app from the account page; return it and the recovery codes."""
    page = browser.post("/console/account/totp", {}, token_from="/console/account")
    assert page.status_code == 200, page.text
    assert 'src="data:image/svg+xml' in page.text  # the QR code, drawn server-side
    found = _SECRET.search(page.text)
    assert found, page.text
    totp = pyotp.TOTP(found.group(1).replace(" ", ""))
    done = browser.post(
        "/console/account/totp/confirm",
        {"code": totp.at(clock.now)},
        token_from="/console/account",
    )
    assert done.status_code == 201, done.text
    codes = _CODES.findall(done.text)
    assert len(codes) == 10
    return totp, codes


def events(services: Services, action: str) -> list[AuditEvent]:
    with services.database.read() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_totp_enrolment_stores_the_secret_sealed(
    owner: Browser, services: Services, clock: Clock
) -> None:
    totp, _ = enrol_totp(owner, clock)
    with services.database.read() as session:
        row = session.scalar(select(TotpFactor))
        assert row is not None
        assert row.confirmed_at is not None
        assert totp.secret not in row.secret
        assert services.sealer.open(row.secret) == totp.secret
    assert len(events(services, "user.factor_added")) == 1
    assert len(events(services, "user.recovery_codes_generated")) == 1
    assert "Authenticator app: <strong>on</strong>" in owner.get("/console/account").text


def test_a_wrong_first_code_does_not_turn_the_factor_on(
    owner: Browser, services: Services, clock: Clock
) -> None:
    page = owner.post("/console/account/totp", {}, token_from="/console/account")
    secret = _SECRET.search(page.text)
    assert secret
    totp = pyotp.TOTP(secret.group(1).replace(" ", ""))
    wrong = "000000" if totp.at(clock.now) != "000000" else "111111"
    answer = owner.post(
        "/console/account/totp/confirm", {"code": wrong}, token_from="/console/account"
    )
    assert answer.status_code == 422
    assert services.factors.status(_user_id(services)).totp_confirmed is False
    # Signing in still needs only the password.
    owner.set_session(None)
    assert owner.sign_in("owner@acme.test").headers["location"] == "/console/keys"


def _user_id(services: Services) -> str:
    with services.database.read() as session:
        row = session.scalar(select(ConsoleSession))
        assert row is not None
        return row.user_id


def sign_in_with_factor(browser: Browser) -> None:
    browser.set_session(None)
    answer = browser.sign_in("owner@acme.test")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/signin/factor")


def test_sign_in_asks_for_the_code_and_a_pending_session_reaches_nothing(
    owner: Browser, services: Services, clock: Clock
) -> None:
    totp, _ = enrol_totp(owner, clock)
    clock.advance(timedelta(seconds=60))
    sign_in_with_factor(owner)
    pending = owner.session_token
    for path in ("/console/keys", "/console/account", "/console/members", "/console/audit"):
        answer = owner.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/signin/factor")
    # The pending session's CSRF token does not let it post anywhere else either.
    page = owner.get("/console/signin/factor")
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    posted = owner.client.post(
        "/console/projects", data={"csrf_token": token.group(1), "name": "sneaky"}
    )
    assert posted.status_code == 303
    assert posted.headers["location"].startswith("/console/signin")

    done = owner.post(
        "/console/signin/factor", {"code": totp.at(clock.now)}, token_from="/console/signin/factor"
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console/keys"
    assert owner.session_token != pending  # a new token: no fixation
    assert owner.get("/console/keys").status_code == 200
    with services.database.read() as session:
        stages = [row.stage for row in session.scalars(select(ConsoleSession))]
    assert "second_factor" not in stages
    assert events(services, "user.signed_in")[-1].details == {"method": "totp"}


def test_a_code_is_accepted_once(owner: Browser, services: Services, clock: Clock) -> None:
    totp, _ = enrol_totp(owner, clock)  # the confirm spent the code of this step
    sign_in_with_factor(owner)
    answer = owner.post(
        "/console/signin/factor", {"code": totp.at(clock.now)}, token_from="/console/signin/factor"
    )
    assert answer.status_code == 401
    assert "not right" in answer.text
    assert len(events(services, "user.second_factor_failed")) == 1
    assert owner.get("/console/keys").status_code == 303


def test_wrong_codes_are_throttled(
    owner: Browser, services: Services, clock: Clock, make_browser: MakeBrowser
) -> None:
    enrol_totp(owner, clock)
    sign_in_with_factor(owner)
    statuses = []
    for _ in range(12):
        answer = owner.post(
            "/console/signin/factor", {"code": "12345x"}, token_from="/console/signin/factor"
        )
        statuses.append(answer.status_code)
    assert statuses[0] == 401
    assert 429 in statuses


def test_a_recovery_code_signs_in_once(owner: Browser, services: Services, clock: Clock) -> None:
    _, codes = enrol_totp(owner, clock)
    sign_in_with_factor(owner)
    done = owner.post(
        "/console/signin/factor",
        {"code": codes[0].upper().replace("-", " ")},
        token_from="/console/signin/factor",
    )
    assert done.status_code == 303
    assert owner.get("/console/keys").status_code == 200
    assert len(events(services, "user.recovery_code_used")) == 1
    sign_in_with_factor(owner)
    again = owner.post(
        "/console/signin/factor", {"code": codes[0]}, token_from="/console/signin/factor"
    )
    assert again.status_code == 401


def test_regenerated_codes_replace_the_old_ones(
    owner: Browser, services: Services, clock: Clock
) -> None:
    _, codes = enrol_totp(owner, clock)
    fresh = owner.post("/console/account/recovery-codes", {}, token_from="/console/account")
    assert fresh.status_code == 201
    new_codes = _CODES.findall(fresh.text)
    assert len(new_codes) == 10
    assert not set(new_codes) & set(codes)
    sign_in_with_factor(owner)
    old = owner.post(
        "/console/signin/factor", {"code": codes[1]}, token_from="/console/signin/factor"
    )
    assert old.status_code == 401
    new = owner.post(
        "/console/signin/factor", {"code": new_codes[1]}, token_from="/console/signin/factor"
    )
    assert new.status_code == 303


def test_sign_out_works_from_the_factor_step(owner: Browser, clock: Clock) -> None:
    enrol_totp(owner, clock)
    sign_in_with_factor(owner)
    out = owner.post("/console/signout", {}, token_from="/console/signin/factor")
    assert out.status_code == 303
    assert owner.get("/console/signin/factor").headers["location"] == "/console/signin"


def test_bad_input_at_the_factor_step_is_a_4xx(owner: Browser, clock: Clock) -> None:
    enrol_totp(owner, clock)
    sign_in_with_factor(owner)
    for code in ("", "x" * 64, "\u0663" * 6, "12 34 56 78", "-" * 30):
        answer = owner.post(
            "/console/signin/factor", {"code": code}, token_from="/console/signin/factor"
        )
        assert 400 <= answer.status_code < 500, code
    too_long = owner.post(
        "/console/signin/factor", {"code": "1" * 65}, token_from="/console/signin/factor"
    )
    assert 400 <= too_long.status_code < 500


# -- sudo mode -------------------------------------------------------------------


def test_an_old_sign_in_must_confirm_before_a_sensitive_change(
    owner: Browser, services: Services, clock: Clock
) -> None:
    project = owner.project_id()
    clock.advance(timedelta(minutes=16))
    answer = owner.post("/console/keys", {"project": project, "name": "admin", "scopes": ["*"]})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sudo?next=%2Fconsole%2Fkeys"
    with services.database.read() as session:
        assert session.scalar(select(ApiKey).where(ApiKey.name == "admin")) is None
    # A plain key needs no confirmation.
    owner.create_key("plain")
    wrong = owner.post("/console/sudo", {"password": "nope", "next": "/console/keys"})
    assert wrong.status_code == 401
    right = owner.post("/console/sudo", {"password": PASSWORD, "next": "/console/keys"})
    assert right.status_code == 303
    assert right.headers["location"] == "/console/keys"
    owner.create_key("admin", scopes=["*"])
    assert len(events(services, "user.reauthenticated")) == 1


def test_sudo_with_a_totp_code_and_removing_the_factor(
    owner: Browser, services: Services, clock: Clock
) -> None:
    totp, _ = enrol_totp(owner, clock)
    clock.advance(timedelta(minutes=20))
    answer = owner.post("/console/account/totp/remove", {}, token_from="/console/account")
    assert answer.headers["location"] == "/console/sudo?next=%2Fconsole%2Faccount"
    assert services.factors.status(_user_id(services)).totp_confirmed
    again = owner.post("/console/sudo", {"code": totp.at(clock.now), "next": "/console/account"})
    assert again.status_code == 303
    removed = owner.post("/console/account/totp/remove", {}, token_from="/console/account")
    assert removed.headers["location"].startswith("/console/account")
    assert not services.factors.status(_user_id(services)).has_factor
    assert len(events(services, "user.factor_removed")) == 1


def test_sudo_page_sends_only_to_console_pages(owner: Browser) -> None:
    answer = owner.post("/console/sudo", {"password": PASSWORD, "next": "https://evil.test/"})
    assert answer.headers["location"] == "/console/keys"


def test_wrong_sudo_passwords_are_throttled(owner: Browser) -> None:
    statuses = [
        owner.post("/console/sudo", {"password": "wrong", "next": ""}).status_code
        for _ in range(12)
    ]
    assert statuses[0] == 401
    assert 429 in statuses


# -- the organization's policy -------------------------------------------------


def test_owner_requires_a_factor_and_a_member_without_one_may_only_enrol(
    owner: Browser, services: Services, clock: Clock, make_browser: MakeBrowser
) -> None:
    link = owner.invite("dev@acme.test", "admin")
    member = make_browser()
    assert member.join(link).status_code == 303
    # The owner needs a factor of their own first.
    refused = owner.post(
        "/console/settings/security", {"require_mfa": "on"}, token_from="/console/settings/security"
    )
    assert refused.status_code == 409
    enrol_totp(owner, clock)
    turned_on = owner.post(
        "/console/settings/security", {"require_mfa": "on"}, token_from="/console/settings/security"
    )
    assert turned_on.status_code == 303
    assert len(events(services, "organization.mfa_policy_changed")) == 1
    # The member's session ended; an admin cannot change the policy.
    assert member.get("/console/keys").status_code == 303
    answer = member.sign_in("dev@acme.test")
    assert answer.headers["location"].startswith("/console/signin/enrol")
    for path in ("/console/keys", "/console/account", "/console/settings/security"):
        blocked = member.get(path)
        assert blocked.status_code == 303
        assert blocked.headers["location"].startswith("/console/signin/enrol")
    page = member.post("/console/signin/enrol/totp", {}, token_from="/console/signin/enrol")
    assert page.status_code == 303
    setup = member.get("/console/signin/enrol")
    secret = _SECRET.search(setup.text)
    assert secret, setup.text
    totp = pyotp.TOTP(secret.group(1).replace(" ", ""))
    done = member.post(
        "/console/signin/enrol/confirm",
        {"code": totp.at(clock.now)},
        token_from="/console/signin/enrol",
    )
    assert done.status_code == 201
    assert len(_CODES.findall(done.text)) == 10
    assert member.get("/console/keys").status_code == 200
    admin_try = member.post(
        "/console/settings/security", {"require_mfa": ""}, token_from="/console/settings/security"
    )
    assert admin_try.status_code == 403
    with services.database.read() as session:
        assert session.scalar(select(Organization.require_mfa)) is True


def test_the_policy_change_needs_sudo(owner: Browser, services: Services, clock: Clock) -> None:
    enrol_totp(owner, clock)
    clock.advance(timedelta(minutes=16))
    answer = owner.post(
        "/console/settings/security", {"require_mfa": "on"}, token_from="/console/settings/security"
    )
    assert answer.headers["location"] == "/console/sudo?next=%2Fconsole%2Fsettings%2Fsecurity"
    with services.database.read() as session:
        assert session.scalar(select(Organization.require_mfa)) is False


def test_revoking_and_role_changes_send_an_old_session_to_confirm_and_back(
    owner: Browser, services: Services, clock: Clock, make_browser: MakeBrowser
) -> None:
    key_id, _ = owner.create_key("laptop")
    link = owner.invite("dev@acme.test")
    assert make_browser().join(link).status_code == 303
    with services.database.read() as session:
        dev = session.scalar(select(User.id).where(User.email == "dev@acme.test"))
    clock.advance(timedelta(minutes=15))
    revoke = owner.post(f"/console/keys/{key_id}/revoke", {})
    assert revoke.headers["location"] == f"/console/sudo?next=%2Fconsole%2Fkeys%2F{key_id}"
    role = owner.post(f"/console/members/{dev}/role", {"role": "admin"})
    assert role.headers["location"] == "/console/sudo?next=%2Fconsole%2Fmembers"
    remove = owner.post(f"/console/members/{dev}/remove", {})
    assert remove.headers["location"] == "/console/sudo?next=%2Fconsole%2Fmembers"
    with services.database.read() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.id == key_id))
        assert key is not None
        assert key.revoked_at is None
    assert [
        member.role.value
        for member in services.members.list_members(
            services.sessions.resolve(owner.session_token).caller()  # type: ignore[union-attr]
        )
        if member.user_id == dev
    ] == ["member"]
    page = owner.get(f"/console/sudo?next=/console/keys/{key_id}")
    assert page.status_code == 200
    back = owner.post("/console/sudo", {"password": PASSWORD, "next": f"/console/keys/{key_id}"})
    assert back.headers["location"] == f"/console/keys/{key_id}"
    assert owner.post(f"/console/keys/{key_id}/revoke", {}).status_code == 303
    with services.database.read() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.id == key_id))
        assert key is not None
        assert key.revoked_at is not None


def test_no_secret_or_code_reaches_the_logs(
    owner: Browser, services: Services, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    totp, codes = enrol_totp(owner, clock)
    clock.advance(timedelta(seconds=30))
    sign_in_with_factor(owner)
    code = totp.at(clock.now)
    owner.post("/console/signin/factor", {"code": code}, token_from="/console/signin/factor")
    logged = caplog.text
    assert totp.secret not in logged
    assert code not in logged
    assert not any(recovery in logged for recovery in codes)


def test_a_pending_session_expires_after_ten_minutes(owner: Browser, clock: Clock) -> None:
    enrol_totp(owner, clock)
    sign_in_with_factor(owner)
    clock.advance(timedelta(minutes=9, seconds=59))
    assert owner.get("/console/signin/factor").status_code == 200
    clock.advance(timedelta(seconds=1))
    gone = owner.get("/console/signin/factor")
    assert gone.status_code == 303
    assert gone.headers["location"] == "/console/signin"
