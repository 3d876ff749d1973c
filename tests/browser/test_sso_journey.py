"""Single sign-on in Chromium: an owner sets up SSO, a new person signs in through
a real OpenID Connect provider's page (oidc-provider-mock, its own process) and
lands in the console, against a real ``keyplane serve``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import PageWatch, sign_up
from tests.oidc_provider import Provider, oidc_provider
from tests.processes import free_port, serve, sqlite_env

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password"


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    with oidc_provider(tmp_path / "provider.log") as running:
        yield running


@pytest.fixture
def sso_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``keyplane serve`` whose public URL (the redirect URI's base) is its own address."""
    monkeypatch.delenv("KEYPLANE_SIGNUP", raising=False)
    port = free_port()
    env = sqlite_env(tmp_path / "data")
    env["KEYPLANE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    with serve(env, tmp_path / "server.log", port=port) as base:
        yield base


def keyplane_failures(watch: PageWatch, base: str) -> list[str]:
    """The failures of Keyplane's answers (the provider's own page loads a stylesheet
    from the internet, which this machine cannot reach: not ours to check)."""
    return [failure for failure in watch.failures if base in failure]


def test_owner_sets_up_sso_and_a_new_person_signs_in_through_the_provider(
    browser: Any, sso_server: str, provider: Provider, tmp_path: Path
) -> None:
    base = sso_server
    secret = "client-secret-" + secrets.token_hex(12)

    owner_context = browser.new_context(base_url=base)
    owner = owner_context.new_page()
    owner_watch = PageWatch(owner)
    sign_up(owner, base, email="ada@analytical.test", password=PASSWORD, organization="Analytical")
    owner.get_by_role("link", name="Single sign-on").click()
    owner.get_by_role("heading", name="Single sign-on", exact=True).wait_for()
    assert f"{base}/console/sso/callback" in owner.content()
    owner.get_by_label("Issuer URL").fill(provider.issuer)
    owner.get_by_label("Client ID").fill("keyplane-browser")
    owner.get_by_label("Client secret").fill(secret)
    owner.get_by_label("E-mail domain").fill("analytical.test")
    owner.get_by_label("Default role").select_option("member")
    owner.get_by_role("button", name="Save single sign-on").click()
    owner.get_by_text("Single sign-on saved.").wait_for()
    assert owner.get_by_label("Issuer URL").input_value() == provider.issuer
    assert owner.get_by_label("Client secret").input_value() == ""
    assert secret not in owner.content()
    owner_watch.assert_clean()

    # A new person, in a browser of their own; the provider vouches for their address.
    sub = "grace-" + secrets.token_hex(4)
    provider.set_user(sub, "grace@analytical.test")
    context = browser.new_context(base_url=base)
    page = context.new_page()
    watch = PageWatch(page)
    page.goto(f"{base}/console/signin")
    page.get_by_role("link", name="Sign in with SSO").click()
    page.get_by_label("Work e-mail address").fill("grace@analytical.test")
    page.get_by_role("button", name="Continue with SSO").click()

    page.get_by_role("heading", name="Authorize Client").wait_for()
    assert page.url.startswith(provider.issuer + "/oauth2/authorize")
    page.get_by_placeholder("sub").fill(sub)
    page.get_by_role("button", name="Authorize").click()

    page.get_by_role("heading", name="API Keys").wait_for()
    assert page.url == f"{base}/console/keys"
    assert "grace@analytical.test" in page.content()
    assert "Analytical" in page.content()
    assert secret not in page.content()
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    assert cookies["keyplane_session"]["httpOnly"]
    assert "keyplane_sso" not in cookies  # the challenge cookie is gone once used
    assert keyplane_failures(watch, base) == []

    # The owner sees who came in, and how.
    owner.goto(f"{base}/console/members")
    row = owner.get_by_role("row").filter(has_text="grace@analytical.test")
    row.wait_for()
    assert "member" in row.inner_text().lower()
    server_log = (tmp_path / "server.log").read_text()
    assert secret not in server_log
