"""Mail the console sends, read from a real SMTP server: verifying an address,
resetting a forgotten password, invitations. And what happens without mail."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from keyplane.config import Settings
from keyplane.service.services import Services
from keyplane.storage.models import (
    AuditEvent,
    ConsoleSession,
    Organization,
    OutboxMessage,
    User,
    UserToken,
)
from tests.console.conftest import PASSWORD, Browser
from tests.mail import MailServer, mail_server  # noqa: F401 - the fixture
from tests.support import Clock

MakeBrowser = Callable[..., Browser]
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, mail_server: MailServer) -> Settings:  # noqa: F811
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        smtp_url=mail_server.url,
        public_url="http://console.test",
    )


def deliver(services: Services) -> None:
    services.outbox.run_once()


def forgot(browser: Browser, email: str) -> str:
    response = browser.post(
        "/console/forgot-password", {"email": email}, token_from="/console/forgot-password"
    )
    assert response.status_code == 200, response.text
    return response.text


def reset(browser: Browser, path: str, password: str = NEW_PASSWORD) -> object:
    token = path.split("token=", 1)[1]
    return browser.post(
        "/console/reset-password",
        {"token": token, "password": password, "confirm_password": password},
        token_from="/console/signin",
    )


def verified_at(services: Services, email: str) -> object:
    with services.database.read() as session:
        return session.scalar(select(User.email_verified_at).where(User.email == email))


def sign_up(
    browser: Browser, email: str, password: str = PASSWORD, organization: str = "Acme"
) -> str:
    response = browser.post(
        "/console/signup",
        {"email": email, "password": password, "organization": organization},
        token_from="/console/signup",
    )
    assert response.status_code == 200, response.text
    assert "keyplane_session" not in response.headers.get("set-cookie", "")
    return response.text


@pytest.fixture
def owner(browser: Browser, services: Services, mail_server: MailServer) -> Browser:  # noqa: F811
    """With mail, sign-up signs no one in: the owner signs up, then signs in."""
    sign_up(browser, "owner@acme.test")
    assert browser.sign_in("owner@acme.test").status_code == 303
    return browser


def test_sign_up_mails_a_verification_link_that_verifies_the_address(
    browser: Browser,
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    page = sign_up(browser, "ada@acme.test")
    assert "Check your inbox" in page
    assert browser.sign_in("ada@acme.test").status_code == 303
    assert "not verified yet" in browser.get("/console/keys").text
    deliver(services)
    (mail,) = mail_server.to("ada@acme.test")
    assert mail.subject == "Verify your e-mail address for Keyplane"
    assert mail.link().startswith("http://console.test/console/verify-email?token=")
    page = browser.get(mail.path())  # GET spends nothing: scanners fetch links
    assert page.status_code == 200
    assert verified_at(services, "ada@acme.test") is None
    token = mail.path().split("token=", 1)[1]
    done = browser.post("/console/verify-email", {"token": token}, token_from=mail.path())
    assert done.status_code == 303
    assert verified_at(services, "ada@acme.test") is not None
    assert "not verified yet" not in browser.get("/console/keys").text
    assert "verified" in browser.get("/console/account").text
    again = browser.post("/console/verify-email", {"token": token}, token_from="/console/account")
    assert again.status_code == 404  # single use


def test_sign_up_answers_the_same_for_an_address_that_has_an_account(
    owner: Browser,
    make_browser: MakeBrowser,
    services: Services,
    mail_server: MailServer,  # noqa: F811
    open_signup: None,
) -> None:
    stranger = make_browser("198.51.100.39")
    strip = re.compile(r'name="csrf_token" value="[^"]*"')
    taken = sign_up(stranger, "owner@acme.test", "some other password", "Evil")
    fresh = sign_up(stranger, "fresh@acme.test", "some other password", "Evil")
    assert strip.sub("", taken).replace("owner@", "X@") == strip.sub("", fresh).replace(
        "fresh@", "X@"
    )
    deliver(services)
    exists = [m for m in mail_server.to("owner@acme.test") if "already have" in m.subject]
    assert len(exists) == 1
    assert "Nothing was changed" in exists[0].text
    with services.database.read() as session:
        names = set(session.scalars(select(Organization.name)))
    assert names == {"Acme", "Evil"}  # one Evil: the fresh address's, none for the owner
    # The owner's password is untouched and no session was made for the stranger.
    assert make_browser("198.51.100.38").sign_in("owner@acme.test").status_code == 303
    assert stranger.get("/console/keys").status_code == 303


def test_forgot_password_answers_the_same_for_every_address_and_mails_only_accounts(
    owner: Browser,
    make_browser: MakeBrowser,
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    stranger = make_browser("198.51.100.40")
    known = forgot(stranger, "owner@acme.test")
    unknown = forgot(stranger, "nobody@acme.test")
    strip = re.compile(r'name="csrf_token" value="[^"]*"')
    assert strip.sub("", known) == strip.sub("", unknown)
    deliver(services)
    assert mail_server.to("nobody@acme.test") == []
    assert len(mail_server.to("owner@acme.test")) == 2  # the verification and the reset
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2


def test_a_reset_link_sets_the_password_once_and_ends_every_session(
    owner: Browser,
    make_browser: MakeBrowser,
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    stranger = make_browser("198.51.100.41")
    forgot(stranger, "owner@acme.test")
    deliver(services)
    mail = next(m for m in mail_server.to("owner@acme.test") if "Reset" in m.subject)
    assert "owner@acme.test" in stranger.get(mail.path()).text
    response = reset(stranger, mail.path())
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert "notice=password-reset" in response.headers["location"]  # type: ignore[attr-defined]
    # Not signed in by the link: the owner's old session is gone, the new password works.
    assert owner.get("/console/keys").status_code == 303
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 0
    assert make_browser("198.51.100.42").sign_in("owner@acme.test", PASSWORD).status_code == 401
    assert make_browser("198.51.100.43").sign_in("owner@acme.test", NEW_PASSWORD).status_code == 303
    # The link is spent; the address counts as verified (the mailbox was reached).
    assert reset(stranger, mail.path(), "yet another password").status_code == 404  # type: ignore[attr-defined]
    assert verified_at(services, "owner@acme.test") is not None
    with services.database.read() as session:
        actions = set(session.scalars(select(AuditEvent.action)))
    assert {"user.password_reset_requested", "user.password_reset"} <= actions


def test_a_reset_link_expires_and_a_newer_one_replaces_it(
    owner: Browser,
    make_browser: MakeBrowser,
    services: Services,
    mail_server: MailServer,  # noqa: F811
    clock: Clock,
) -> None:
    stranger = make_browser("198.51.100.44")
    forgot(stranger, "owner@acme.test")
    forgot(stranger, "owner@acme.test")
    deliver(services)
    first, second = [m for m in mail_server.to("owner@acme.test") if "Reset" in m.subject]
    assert stranger.get(first.path()).status_code == 404  # replaced
    clock.advance(timedelta(minutes=31))
    assert stranger.get(second.path()).status_code == 404  # expired
    assert reset(stranger, second.path()).status_code == 404  # type: ignore[attr-defined]
    assert make_browser("198.51.100.45").sign_in("owner@acme.test", PASSWORD).status_code == 303


def test_concurrent_uses_of_one_reset_link_set_one_password(
    owner: Browser,
    make_browser: MakeBrowser,
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    forgot(make_browser("198.51.100.46"), "owner@acme.test")
    deliver(services)
    mail = next(m for m in mail_server.to("owner@acme.test") if "Reset" in m.subject)
    token = mail.path().split("token=", 1)[1]
    browsers = [make_browser(f"198.51.100.{50 + index}") for index in range(4)]
    forms = [(b, b.csrf(mail.path())) for b in browsers]

    def use(pair: tuple[Browser, str]) -> int:
        browser, csrf = pair
        password = f"password number {browsers.index(browser)}"
        return browser.client.post(
            "/console/reset-password",
            data={
                "token": token,
                "password": password,
                "confirm_password": password,
                "csrf_token": csrf,
            },
        ).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(use, forms))
    assert codes == [303, 404, 404, 404]
    with services.database.read() as session:
        used = session.scalars(
            select(UserToken.used_at).where(UserToken.purpose == "reset_password")
        )
        assert all(at is not None for at in used)


def test_reset_requests_are_throttled_per_address(
    owner: Browser,
    make_browser: MakeBrowser,
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    stranger = make_browser("198.51.100.47")
    codes = []
    for _ in range(7):
        codes.append(
            stranger.post(
                "/console/forgot-password",
                {"email": "owner@acme.test"},
                token_from="/console/forgot-password",
            ).status_code
        )
    assert codes[:5] == [200] * 5
    assert 429 in codes[5:]


def test_an_invitation_is_mailed_to_the_invited_address_and_its_link_works(
    owner: Browser,
    make_browser: MakeBrowser,
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    response = owner.post("/console/members/invite", {"email": "grace@acme.test", "role": "admin"})
    assert response.status_code == 201
    assert "We e-mailed this link to grace@acme.test" in response.text
    deliver(services)
    (mail,) = mail_server.to("grace@acme.test")
    assert mail.subject == "You are invited to Acme on Keyplane"
    assert "owner@acme.test invited grace@acme.test" in mail.text
    grace = make_browser("198.51.100.48")
    assert grace.join(mail.path()).status_code == 303
    assert verified_at(services, "grace@acme.test") is not None  # the link proved it


def test_a_mail_server_that_is_down_does_not_fail_the_request(
    tmp_path: Path, database_url: str, clock: Clock
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, smtp_url="smtp://127.0.0.1:9")
    services = Services.open(settings, clock=clock)
    try:
        services.bootstrap(
            organization_name="Acme",
            project_name="Main",
            owner_email="owner@acme.test",
            owner_password=PASSWORD,
        )
        services.email_links.request_reset("owner@acme.test")
        assert services.outbox.run_once() == 0
        (message,) = services.outbox.queued()
        assert message.status == "waiting"
        assert message.attempts == 1
        assert message.last_error
        assert "token" not in (message.last_error or "")
    finally:
        services.close()


@pytest.mark.parametrize("address", ["ada\x00@acme.test", "ada@acme\x00.test", "ada@acme.te\x1bst"])
def test_control_characters_in_an_address_are_refused_not_sent_to_the_database(
    browser: Browser,
    services: Services,
    address: str,
    mail_server: MailServer,  # noqa: F811
) -> None:
    forgot_answer = browser.post(
        "/console/forgot-password", {"email": address}, token_from="/console/signin"
    )
    assert forgot_answer.status_code == 422
    signup_answer = browser.post(
        "/console/signup",
        {"email": address, "password": PASSWORD, "organization": "Acme"},
        token_from="/console/signup",
    )
    assert signup_answer.status_code == 422
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
