"""Accounts in Chromium against a real ``keyplane serve`` that sends real mail (an
aiosmtpd server started by the test): verify an address, forget and reset a
password, join a second organization and switch to it, come back after a session
ended."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import PageWatch
from tests.mail import MailServer, mail_server  # noqa: F401 - the fixture
from tests.processes import KEYPLANE, server, sqlite_env

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password"
NEW_PASSWORD = "another long password"


def sign_up(page: Any, base: str, *, email: str, password: str, organization: str) -> None:
    """Sign-up with mail: "check your inbox", then sign in with the password chosen."""
    page.goto(f"{base}/console/signup")
    page.get_by_label("Organization name").fill(organization)
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="API Keys").wait_for()


@pytest.fixture
def mail_console(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mail_server: MailServer,  # noqa: F811
) -> Iterator[str]:
    """``keyplane serve`` with mail (KEYPLANE_SMTP_URL) and open sign-up."""
    monkeypatch.delenv("KEYPLANE_SMTP_URL", raising=False)
    with server(
        tmp_path / "data",
        tmp_path / "server.log",
        smtp_url=mail_server.url,
        signup="open",
    ) as base:
        yield base


def test_sign_up_verify_forget_and_reset_the_password(
    browser: Any,
    mail_console: str,
    mail_server: MailServer,  # noqa: F811
) -> None:
    base = mail_console
    context = browser.new_context(base_url=base)
    page = context.new_page()
    watch = PageWatch(page)
    sign_up(page, base, email="ada@example.com", password=PASSWORD, organization="Analytical")
    page.get_by_text("Your e-mail address is not verified yet").wait_for()
    (verification,) = mail_server.wait_for("ada@example.com")
    assert verification.link().startswith(f"{base}/console/verify-email?token=")
    page.goto(verification.link())
    page.get_by_role("button", name="Verify my address").click()
    page.get_by_text("Your e-mail address is verified.").wait_for()
    assert page.get_by_text("not verified yet").count() == 0

    page.locator(".account-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You have signed out.").wait_for()
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("E-mail address").fill("ada@example.com")
    page.get_by_role("button", name="Send the link").click()
    page.get_by_text("If an account exists for that address").wait_for()
    reset_mail = mail_server.wait_for("ada@example.com", count=2)[1]
    assert reset_mail.subject == "Reset your Keyplane password"
    page.goto(reset_mail.link())
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("Repeat it").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    page.get_by_text("Password changed. Sign in with the new password.").wait_for()
    page.get_by_label("E-mail address").fill("ada@example.com")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="API Keys").wait_for()
    page.goto(reset_mail.link())  # spent
    page.get_by_role("heading", name="This link does not work").wait_for()
    context.close()
    # The spent link answers 404 (a page and its console message), nothing else failed.
    assert [f for f in watch.failures if "/reset-password" not in f and "404" not in f] == []
    assert len(watch.failures) == 2


def test_join_a_second_organization_by_mail_switch_and_come_back_after_the_session_ended(
    browser: Any,
    mail_console: str,
    mail_server: MailServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    base = mail_console
    owner_context = browser.new_context(base_url=base)
    owner = owner_context.new_page()
    sign_up(owner, base, email="boss@globex.com", password=PASSWORD, organization="Globex")
    owner.get_by_role("link", name="Members").click()
    owner.get_by_label("E-mail address").fill("ada@example.com")
    owner.get_by_label("Role", exact=True).select_option("member")
    owner.get_by_role("button", name="Create invitation").click()
    owner.get_by_text("We e-mailed this link to ada@example.com").wait_for()

    ada_context = browser.new_context(base_url=base)
    ada = ada_context.new_page()
    watch = PageWatch(ada)
    sign_up(ada, base, email="ada@example.com", password=PASSWORD, organization="Analytical")
    invitation = next(
        m for m in mail_server.wait_for("ada@example.com", count=2) if "invited" in m.subject
    )
    ada.goto(invitation.link())
    ada.get_by_role("button", name="Join Globex").click()
    ada.get_by_role("heading", name="API Keys").wait_for()
    current = ada.locator(".org-current")
    assert current.inner_text() == "Globex"

    ada.locator(".org-switcher summary").click()
    ada.get_by_role("button", name="Analytical").click()
    ada.get_by_text("Switched organization.").wait_for()
    assert ada.locator(".org-current").inner_text() == "Analytical"

    ada.goto(f"{base}/console/projects")
    ada.get_by_role("heading", name="Projects").wait_for()
    # The operator signs everyone out; Ada's next step says so and comes back here.
    subprocess.run(
        [*KEYPLANE, "admin", "end-sessions"],
        env=sqlite_env(tmp_path / "data"),
        check=True,
        capture_output=True,
        timeout=60,
    )
    ada.reload()
    ada.get_by_text("Your session ended.").wait_for()
    ada.get_by_label("E-mail address").fill("ada@example.com")
    ada.get_by_label("Password").fill(PASSWORD)
    ada.get_by_role("button", name="Sign in", exact=True).click()
    ada.get_by_role("heading", name="Projects").wait_for()
    assert ada.url == f"{base}/console/projects"
    assert ada.locator(".org-current").inner_text() == "Analytical"  # the last one used
    watch.assert_clean()
    ada_context.close()
    owner_context.close()
