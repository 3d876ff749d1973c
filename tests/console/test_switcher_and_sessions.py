"""Many organizations per person (the switcher, landing where one left off) and
"Your sessions" (listing, signing out one or all others, the idle timeout)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from keyplane.service.services import Services
from keyplane.storage.models import AuditEvent, Organization
from tests.console.conftest import PASSWORD, Browser
from tests.support import Clock

MakeBrowser = Callable[..., Browser]


def organization_id(services: Services, name: str) -> str:
    with services.database.read() as session:
        found = session.scalar(select(Organization.id).where(Organization.name == name))
    assert found
    return found


def current_organization(browser: Browser) -> str:
    found = re.search(
        r'class="org-current" data-organization="(org_\w+)"', browser.get("/console/keys").text
    )
    assert found
    return found.group(1)


@pytest.fixture
def two_organizations(
    owner: Browser, make_browser: MakeBrowser, open_signup: None
) -> tuple[Browser, Browser]:
    """owner@acme.test owns Acme; Globex's owner invites them as a member."""
    globex = make_browser("198.51.100.30")
    globex.sign_up("boss@globex.test", "Globex")
    link = globex.invite("owner@acme.test", "member")
    joined = owner.join_signed_in(link)
    assert joined.status_code == 303, joined.text
    return owner, globex


def switch(browser: Browser, organization: str, next_page: str = "/console/keys") -> object:
    return browser.post(
        "/console/organizations/switch", {"organization": organization, "next": next_page}
    )


def test_the_switcher_lists_every_organization_and_switches(
    two_organizations: tuple[Browser, Browser], services: Services
) -> None:
    person, _ = two_organizations
    acme, globex = organization_id(services, "Acme"), organization_id(services, "Globex")
    assert current_organization(person) == globex  # joining lands in the new one
    page = person.get("/console/projects").text
    assert "Acme" in page
    assert "Globex" in page
    response = switch(person, acme, "/console/projects")
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert response.headers["location"] == "/console/projects?notice=switched"  # type: ignore[attr-defined]
    assert current_organization(person) == acme
    with services.database.read() as session:
        assert session.scalar(
            select(AuditEvent.pk).where(
                AuditEvent.action == "user.switched_organization",
                AuditEvent.organization_id == acme,
            )
        )


def test_a_page_of_one_object_is_not_kept_across_a_switch(
    two_organizations: tuple[Browser, Browser], services: Services
) -> None:
    person, _ = two_organizations
    key_id, _ = person.create_key("globex key")
    response = switch(person, organization_id(services, "Acme"), f"/console/keys/{key_id}")
    assert response.headers["location"] == "/console/keys?notice=switched"  # type: ignore[attr-defined]
    assert person.get(f"/console/keys/{key_id}").status_code == 404  # another organization's


def test_sign_in_lands_in_the_organization_used_last(
    two_organizations: tuple[Browser, Browser], services: Services, make_browser: MakeBrowser
) -> None:
    person, _ = two_organizations
    acme = organization_id(services, "Acme")
    switch(person, acme)
    later = make_browser("198.51.100.31")
    assert later.sign_in("owner@acme.test").status_code == 303
    assert current_organization(later) == acme
    switch(later, organization_id(services, "Globex"))
    again = make_browser("198.51.100.32")
    again.sign_in("owner@acme.test")
    assert current_organization(again) == organization_id(services, "Globex")


def test_removed_from_the_last_organization_lands_in_another(
    two_organizations: tuple[Browser, Browser], services: Services, make_browser: MakeBrowser
) -> None:
    _person, globex_owner = two_organizations
    with services.database.read() as session:
        from keyplane.storage.models import User

        user_id = session.scalar(select(User.id).where(User.email == "owner@acme.test"))
    assert globex_owner.post(f"/console/members/{user_id}/remove", {}).status_code == 303
    later = make_browser("198.51.100.33")
    assert later.sign_in("owner@acme.test").status_code == 303
    assert current_organization(later) == organization_id(services, "Acme")


def test_switching_into_an_organization_one_is_not_in_is_refused(
    two_organizations: tuple[Browser, Browser],
    services: Services,
    make_browser: MakeBrowser,
) -> None:
    person, _ = two_organizations
    outsider = make_browser("198.51.100.34")
    outsider.sign_up("eve@initech.test", "Initech")
    initech = organization_id(services, "Initech")
    response = switch(person, initech)
    assert response.headers["location"] == "/console/keys"  # type: ignore[attr-defined]
    assert current_organization(person) != initech
    assert "Initech" not in person.get("/console/keys").text


def test_your_sessions_lists_them_and_signs_out_one_or_all_others(
    owner: Browser, make_browser: MakeBrowser, services: Services
) -> None:
    laptop = make_browser("198.51.100.35")
    phone = make_browser("198.51.100.36")
    for other in (laptop, phone):
        assert other.sign_in("owner@acme.test").status_code == 303
    page = owner.get("/console/account").text
    assert page.count('/end"') == 2
    assert "198.51.100.35" in page
    assert "198.51.100.36" in page
    assert "this browser" in page
    session_id = re.search(r"/console/account/sessions/(ses_\w+)/end", page)
    assert session_id
    assert owner.post(f"/console/account/sessions/{session_id.group(1)}/end", {}).status_code == 303
    alive = [b.get("/console/keys").status_code for b in (laptop, phone)]
    assert sorted(alive) == [200, 303]
    assert owner.post("/console/account/sessions/end-others", {}).status_code == 303
    assert laptop.get("/console/keys").status_code == 303
    assert phone.get("/console/keys").status_code == 303
    assert owner.get("/console/keys").status_code == 200


def test_one_cannot_end_another_persons_session(
    owner: Browser, make_browser: MakeBrowser, open_signup: None, services: Services
) -> None:
    other = make_browser("198.51.100.37")
    other.sign_up("mallory@else.test", "Else")
    theirs = re.search(
        r"/console/account/sessions/(ses_\w+)/end", other.get("/console/account").text
    )
    assert theirs is None  # their own page lists no other session to end
    from keyplane.storage.models import ConsoleSession, User

    with services.database.read() as session:
        owner_session = session.scalar(
            select(ConsoleSession.id)
            .join(User, User.id == ConsoleSession.user_id)
            .where(User.email == "owner@acme.test")
        )
    response = other.post(f"/console/account/sessions/{owner_session}/end", {})
    assert response.status_code == 404
    assert owner.get("/console/keys").status_code == 200


def test_an_idle_session_ends_and_sign_in_returns_to_the_page(
    owner: Browser, services: Services, clock: Clock
) -> None:
    clock.advance(services.settings.session_idle_timeout + timedelta(seconds=1))
    response = owner.get("/console/projects?tab=all")
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/console/signin?")
    assert "ended=1" in location
    page = owner.get(location)
    assert "Your session ended" in page.text
    signed_in = owner.post(
        "/console/signin",
        {"email": "owner@acme.test", "password": PASSWORD, "next": "/console/projects?tab=all"},
        token_from=location,
    )
    assert signed_in.headers["location"] == "/console/projects?tab=all"


def test_a_session_ends_at_its_lifetime_however_active(
    owner: Browser, services: Services, clock: Clock
) -> None:
    lifetime = services.settings.session_lifetime
    step = services.settings.session_idle_timeout - timedelta(minutes=1)
    elapsed = timedelta(0)
    while elapsed + step < lifetime:
        clock.advance(step)
        elapsed += step
        assert owner.get("/console/keys").status_code == 200
    clock.advance(lifetime - elapsed)
    assert owner.get("/console/keys").status_code == 303


def test_signing_out_says_so(owner: Browser) -> None:
    response = owner.post("/console/signout", {})
    assert response.headers["location"] == "/console/signin?notice=signed-out"
    assert "You have signed out." in owner.get(response.headers["location"]).text


def test_a_signed_in_person_creates_another_organization_when_sign_up_is_open(
    owner: Browser, services: Services, open_signup: None
) -> None:
    acme = current_organization(owner)
    response = owner.post("/console/organizations", {"name": "Side project"})
    assert response.status_code == 303
    assert current_organization(owner) == organization_id(services, "Side project")
    page = owner.get("/console/keys").text
    assert "Acme" in page  # still in the switcher
    assert switch(owner, acme).status_code == 303  # type: ignore[attr-defined]


def test_creating_an_organization_follows_the_sign_up_policy(owner: Browser) -> None:
    assert (
        "does not let people create organizations" in owner.get("/console/organizations/new").text
    )
    response = owner.post("/console/organizations", {"name": "Not allowed"})
    assert response.status_code == 403
    assert "Not allowed" not in owner.get("/console/keys").text
