"""Second factors in Chromium against a real ``keyplane serve``: an authenticator app
(codes computed with pyotp here) and a passkey (Chromium's virtual authenticator,
through the DevTools protocol)."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest

from tests.browser.support import PageWatch, sign_up

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password"
EMAIL = "ada@example.com"


def localhost(base: str) -> str:
    """The passkey origin of a server on 127.0.0.1 (an IP address is no RP id)."""
    return base.replace("127.0.0.1", "localhost")


def sign_out(page: Any) -> None:
    page.locator(".account-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()


def sign_in_with_password(page: Any, base: str) -> None:
    page.goto(f"{base}/console/signin")
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def fresh_code(totp: pyotp.TOTP, used: set[str]) -> str:
    """The current code, waiting for the next step if this one was used already."""
    while True:
        code = totp.now()
        if code not in used:
            used.add(code)
            return code
        time.sleep(1)


def test_authenticator_app_enrol_and_sign_in(browser: Any, console_server: str) -> None:
    base = console_server
    page = browser.new_context(base_url=base).new_page()
    watch = PageWatch(page)
    sign_up(page, base, email=EMAIL, password=PASSWORD, organization="Analytical")

    page.goto(f"{base}/console/account")
    page.get_by_role("button", name="Set up an authenticator app").click()
    qr = page.get_by_role("img", name="QR code for setting up the authenticator app")
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert qr.evaluate("image => image.naturalWidth") > 0  # the CSP let the data: image draw
    secret = page.locator("[data-totp-secret]").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    used: set[str] = set()
    page.get_by_label("Code from the app").fill(fresh_code(totp, used))
    page.get_by_role("button", name="Turn on").click()
    page.get_by_role("heading", name="Your recovery codes").wait_for()
    codes = page.locator("[data-recovery-codes] code").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("link", name="I have saved them").click()
    page.get_by_text("Authenticator app:").wait_for()
    watch.assert_clean()

    sign_out(page)
    sign_in_with_password(page, base)
    page.get_by_role("heading", name="Confirm it is you").wait_for()
    assert "/console/signin/factor" in page.url
    page.goto(f"{base}/console/keys")  # a pending session reaches nothing else
    assert "/console/signin/factor" in page.url
    page.get_by_label(re.compile("Code from your authenticator app")).fill(fresh_code(totp, used))
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="API Keys").wait_for()
    assert page.url.endswith("/console/keys")

    # A recovery code works once.
    sign_out(page)
    sign_in_with_password(page, base)
    page.get_by_label(re.compile("Code from your authenticator app")).fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="API Keys").wait_for()
    watch.assert_clean()


def add_virtual_authenticator(page: Any) -> Any:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def test_passkey_enrol_and_sign_in_without_a_password(browser: Any, console_server: str) -> None:
    base = localhost(console_server)
    page = browser.new_context(base_url=base).new_page()
    watch = PageWatch(page)
    cdp, authenticator = add_virtual_authenticator(page)
    sign_up(page, base, email=EMAIL, password=PASSWORD, organization="Analytical")

    page.goto(f"{base}/console/account")
    page.get_by_label("Passkey name").fill("Laptop")
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_role("heading", name="Your recovery codes").wait_for()
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(stored["credentials"]) == 1
    assert stored["credentials"][0]["isResidentCredential"] is True
    page.get_by_role("link", name="I have saved them").click()
    page.get_by_text("Laptop").wait_for()

    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.get_by_role("heading", name="API Keys").wait_for()
    assert page.url.endswith("/console/keys")
    assert EMAIL in page.content()

    # With a password, the passkey is the second factor.
    sign_out(page)
    sign_in_with_password(page, base)
    page.get_by_role("button", name="Use a passkey or security key").click()
    page.get_by_role("heading", name="API Keys").wait_for()
    after = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert after["credentials"][0]["signCount"] >= 3
    watch.assert_clean()


def test_a_passkey_from_another_origin_is_refused(browser: Any, console_server: str) -> None:
    """At 127.0.0.1 (not the configured origin) the console says where passkeys work."""
    base = console_server
    page = browser.new_context(base_url=base).new_page()
    add_virtual_authenticator(page)
    sign_up(page, base, email=EMAIL, password=PASSWORD, organization="Analytical")
    page.goto(f"{base}/console/account")
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_text(re.compile("Passkeys are not available here")).wait_for()
    assert "No passkey yet." in page.content()
