"""Invitation links: bound to their address, never a way into an existing account,
single-use under concurrent accepts (issue 11, finding 1)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from keyplane.service.services import Services
from keyplane.storage.models import ConsoleSession, Invitation, Membership, User
from tests.console.conftest import PASSWORD, Browser

MakeBrowser = Callable[..., Browser]
ATTACKER_PASSWORD = "attacker chose this"


@pytest.fixture
def victim(services: Services) -> str:
    """An owner made the README's way before this fix: bootstrap without a password."""
    services.bootstrap(
        organization_name="Victim Inc", project_name="Main", owner_email="victim@victim.test"
    )
    return "victim@victim.test"


@pytest.fixture
def attacker(make_browser: MakeBrowser, open_signup: None, victim: str) -> Browser:
    """Anyone, with sign-up open: their own organization, so they may invite."""
    browser = make_browser("198.51.100.66")
    browser.sign_up("evil@evil.test", "Evil")
    return browser


def _password_hash(services: Services, email: str) -> str | None:
    with services.database.read() as session:
        return session.scalar(select(User.password_hash).where(User.email == email))


def test_an_invitation_cannot_set_the_password_of_a_passwordless_owner(
    attacker: Browser, make_browser: MakeBrowser, services: Services, victim: str
) -> None:
    link = attacker.invite(victim, "member")
    opener = make_browser("198.51.100.67")  # the attacker again, signed out
    response = opener.join(link, ATTACKER_PASSWORD)
    assert response.status_code == 409
    assert "sign in as it, then open the invitation link again" in response.text
    assert "keyplane_session" not in response.headers.get("set-cookie", "")
    assert _password_hash(services, victim) is None
    assert make_browser("198.51.100.68").sign_in(victim, ATTACKER_PASSWORD).status_code == 401
    # The link stays open for the real owner, and says how to use it.
    page = opener.get(link)
    assert page.status_code == 200
    assert "Sign in first" in page.text


def test_an_invitation_cannot_replace_an_existing_password(
    attacker: Browser, make_browser: MakeBrowser, services: Services, victim: str
) -> None:
    services.accounts.set_password(victim, PASSWORD)
    before = _password_hash(services, victim)
    link = attacker.invite(victim, "admin")
    for password in (ATTACKER_PASSWORD, PASSWORD):  # not even with the right one: sign in first
        assert make_browser("198.51.100.69").join(link, password).status_code == 409
    assert _password_hash(services, victim) == before


def test_the_invited_user_joins_by_signing_in_first(
    attacker: Browser, make_browser: MakeBrowser, services: Services, victim: str
) -> None:
    services.accounts.set_password(victim, PASSWORD)
    link = attacker.invite(victim, "member")
    real = make_browser("192.0.2.40")
    assert real.sign_in(victim).status_code == 303
    page = real.get(link)
    assert "Create account" not in page.text
    response = real.join_signed_in(link)
    assert response.status_code == 303, response.text
    assert "Evil" in real.get("/console/keys").text
    with services.database.read() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Membership)
            .join(User, User.id == Membership.user_id)
            .where(User.email == victim)
        )
    assert count == 2


def test_a_signed_in_user_cannot_accept_someone_elses_invitation(
    attacker: Browser, make_browser: MakeBrowser, services: Services, victim: str
) -> None:
    link = attacker.invite(victim, "owner")
    response = attacker.join_signed_in(link)  # the attacker, signed in as himself
    assert response.status_code == 403
    assert "this invitation is for victim@victim.test" in response.text
    with services.database.read() as session:
        open_links = session.scalar(
            select(func.count()).select_from(Invitation).where(Invitation.accepted_at.is_(None))
        )
    assert open_links == 1


def test_the_sign_in_link_on_the_join_page_comes_back_to_it(
    attacker: Browser, make_browser: MakeBrowser, services: Services, victim: str
) -> None:
    services.accounts.set_password(victim, PASSWORD)
    link = attacker.invite(victim)
    real = make_browser("192.0.2.41")
    token = link.split("token=", 1)[1]
    response = real.post(
        "/console/signin",
        {"email": victim, "password": PASSWORD, "next": link},
        token_from="/console/signin",
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/join?token={token}"


# -- single use under concurrency -----------------------------------------------------

CONCURRENT_ACCEPTS = 8


def test_simultaneous_accepts_of_one_link_let_exactly_one_in(
    owner: Browser, app: FastAPI, services: Services
) -> None:
    link = owner.invite("new@acme.test")
    browsers = [Browser(app, f"192.0.2.{50 + n}") for n in range(CONCURRENT_ACCEPTS)]
    tokens = [browser.csrf("/console/signin") for browser in browsers]
    start = threading.Barrier(CONCURRENT_ACCEPTS, timeout=30)
    secret = link.split("token=", 1)[1]

    def accept(n: int) -> int:
        start.wait()
        return (
            browsers[n]
            .client.post(
                "/console/join",
                data={
                    "csrf_token": tokens[n],
                    "token": secret,
                    "password": f"{PASSWORD} {n}",
                    "confirm_password": f"{PASSWORD} {n}",
                },
            )
            .status_code
        )

    with ThreadPoolExecutor(CONCURRENT_ACCEPTS) as pool:
        codes = list(pool.map(accept, range(CONCURRENT_ACCEPTS), timeout=60))
    assert sorted(codes) == [303] + [404] * (CONCURRENT_ACCEPTS - 1), codes
    with services.database.read() as session:
        users = session.scalar(
            select(func.count()).select_from(User).where(User.email == "new@acme.test")
        )
        sessions = session.scalar(
            select(func.count())
            .select_from(ConsoleSession)
            .join(User, User.id == ConsoleSession.user_id)
            .where(User.email == "new@acme.test")
        )
    assert (users, sessions) == (1, 1)
