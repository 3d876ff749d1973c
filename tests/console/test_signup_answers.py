"""Sign-up answers do not tell which organization names exist, and never touch an
existing account's password (issue 11, finding 8)."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import func, select

from keyplane.service.services import Services
from keyplane.storage.models import Organization
from tests.console.conftest import PASSWORD, Browser

MakeBrowser = Callable[..., Browser]


def _sign_up(browser: Browser, email: str, organization: str, password: str = PASSWORD) -> int:
    return browser.post(
        "/console/signup",
        {"email": email, "password": password, "organization": organization},
        token_from="/console/signup",
    ).status_code


def test_a_taken_organization_name_gets_the_same_answer_as_a_free_one(
    owner: Browser, make_browser: MakeBrowser, open_signup: None, services: Services
) -> None:
    assert _sign_up(make_browser("192.0.2.60"), "a@globex.test", "Acme") == 303
    assert _sign_up(make_browser("192.0.2.61"), "b@globex.test", "Free name") == 303
    with services.database.read() as session:
        named_acme = session.scalar(
            select(func.count()).select_from(Organization).where(Organization.name == "Acme")
        )
    assert named_acme == 2


def test_a_short_password_gets_the_same_answer_for_a_known_and_an_unknown_address(
    owner: Browser, make_browser: MakeBrowser, open_signup: None
) -> None:
    known = make_browser("192.0.2.62").post(
        "/console/signup",
        {"email": "owner@acme.test", "password": "short", "organization": "X"},
        token_from="/console/signup",
    )
    unknown = make_browser("192.0.2.63").post(
        "/console/signup",
        {"email": "nobody@acme.test", "password": "short", "organization": "X"},
        token_from="/console/signup",
    )
    assert (known.status_code, unknown.status_code) == (422, 422)
    assert "at least 10 characters" in known.text
    assert "at least 10 characters" in unknown.text


def test_a_known_address_with_a_wrong_password_gets_the_sign_in_answer_and_its_throttle(
    owner: Browser, make_browser: MakeBrowser, open_signup: None
) -> None:
    browser = make_browser("192.0.2.64")
    response = browser.post(
        "/console/signup",
        {"email": "owner@acme.test", "password": "not the password", "organization": "X"},
        token_from="/console/signup",
    )
    assert response.status_code == 401
    assert "exists" not in response.text
    assert "Wrong e-mail address or password." in response.text
    signin = make_browser("192.0.2.65").sign_in("owner@acme.test", "not the password")
    assert signin.status_code == 401
    codes = {
        _sign_up(browser, "owner@acme.test", "X", "still not it!")
        for _ in range(30)  # the sign-in budget (KEYPLANE_LOGIN_*_LIMIT) runs out
    }
    assert 429 in codes


def test_closed_sign_up_gives_one_answer_for_a_known_and_an_unknown_address(
    owner: Browser, make_browser: MakeBrowser
) -> None:
    """With sign-up closed (the default once an organization exists), a known address
    with a wrong password got the sign-in answer (401) and an unknown one the closed
    page (403): the difference told which addresses have accounts."""
    known = make_browser("192.0.2.66").post(
        "/console/signup",
        {"email": "owner@acme.test", "password": "not the password", "organization": "X"},
        token_from="/console/signin",  # the closed page has no form
    )
    unknown = make_browser("192.0.2.67").post(
        "/console/signup",
        {"email": "nobody@acme.test", "password": "not the password", "organization": "X"},
        token_from="/console/signin",  # the closed page has no form
    )
    assert (known.status_code, unknown.status_code) == (403, 403)
    assert _without_tokens(known.text) == _without_tokens(unknown.text)


def _without_tokens(page: str) -> str:
    """The page without its per-visitor CSRF token."""
    return re.sub(r'name="csrf_token" value="[^"]*"', "", page)
