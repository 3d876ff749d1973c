"""Who may do what in the console: owner, admin, member, and another organization."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.console.conftest import Browser
from tests.support import bearer

MakeBrowser = Callable[..., Browser]


@pytest.fixture
def member(owner: Browser, make_browser: MakeBrowser) -> Browser:
    link = owner.invite("member@acme.test", "member")
    joined = make_browser("198.51.100.50")
    assert joined.join(link).status_code == 303
    return joined


@pytest.fixture
def admin(owner: Browser, make_browser: MakeBrowser) -> Browser:
    link = owner.invite("admin@acme.test", "admin")
    joined = make_browser("198.51.100.51")
    assert joined.join(link).status_code == 303
    return joined


def test_a_member_sees_every_key_of_the_project(owner: Browser, member: Browser) -> None:
    owner.create_key("owner key")
    page = member.get("/console/keys")
    assert page.status_code == 200
    assert "owner key" in page.text
    assert "by owner@acme.test" in page.text


def test_a_member_cannot_revoke_roll_or_disable_someone_elses_key(
    owner: Browser, member: Browser
) -> None:
    key_id, value = owner.create_key("owner key")
    for action in ("revoke", "roll", "disable"):
        response = member.post(f"/console/keys/{key_id}/{action}", {})
        assert response.status_code == 403, action
    assert member.get(f"/console/keys/{key_id}/revoke").status_code == 403
    assert "Revoke</button>" not in member.get("/console/keys").text
    assert owner.client.get("/api/v1/whoami", headers=bearer(value)).status_code == 200


def test_a_member_manages_the_keys_they_created(member: Browser) -> None:
    key_id, value = member.create_key("mine")
    assert member.post(f"/console/keys/{key_id}/disable", {}).status_code == 303
    assert member.client.get("/api/v1/whoami", headers=bearer(value)).status_code == 401
    assert member.post(f"/console/keys/{key_id}/enable", {}).status_code == 303
    assert member.post(f"/console/keys/{key_id}/revoke", {}).status_code == 303
    refused = member.client.get("/api/v1/whoami", headers=bearer(value))
    assert refused.json()["code"] == "REVOKED"


@pytest.mark.parametrize("scope", ["*", "keys:write", "projects:write", "audit:read", "keys:*"])
def test_a_member_cannot_mint_a_management_key(member: Browser, scope: str) -> None:
    response = member.post(
        "/console/keys", {"project": member.project_id(), "name": "x", "scopes": [scope]}
    )
    assert response.status_code == 403
    assert "management scopes" in response.text


def test_a_member_may_grant_read_and_custom_scopes(member: Browser) -> None:
    _, value = member.create_key("reader", scopes=["keys:read"], other_scopes="jobs:read jobs:run")
    whoami = member.client.get("/api/v1/whoami", headers=bearer(value)).json()
    assert whoami["scopes"] == ["jobs:read", "jobs:run", "keys:read"]


def test_a_member_cannot_reach_members_audit_or_create_projects(member: Browser) -> None:
    assert member.get("/console/members").status_code == 403
    assert member.get("/console/audit").status_code == 403
    assert member.post("/console/members/invite", {"email": "x@acme.test"}).status_code == 403
    assert member.post("/console/projects", {"name": "Mine"}).status_code == 403
    page = member.get("/console/keys").text
    assert 'href="/console/members"' not in page
    assert 'href="/console/audit"' not in page


def test_a_member_reads_a_keys_audit_trail(owner: Browser, member: Browser) -> None:
    key_id, _ = owner.create_key("owner key")
    page = member.get(f"/console/keys/{key_id}")
    assert page.status_code == 200
    assert "key.created" in page.text


def test_an_admin_manages_every_key(owner: Browser, member: Browser, admin: Browser) -> None:
    key_id, value = member.create_key("member key")
    assert admin.post(f"/console/keys/{key_id}/revoke", {}).status_code == 303
    assert admin.client.get("/api/v1/whoami", headers=bearer(value)).status_code == 401
    assert admin.get("/console/audit").status_code == 200
    assert admin.get("/console/members").status_code == 200


def test_an_admin_cannot_touch_the_owner_role(
    owner: Browser, admin: Browser, member: Browser
) -> None:
    owner_id = _user_id(owner, "owner@acme.test")
    member_id = _user_id(owner, "member@acme.test")
    assert admin.post(f"/console/members/{owner_id}/role", {"role": "member"}).status_code == 403
    assert admin.post(f"/console/members/{owner_id}/remove", {}).status_code == 403
    assert admin.post(f"/console/members/{member_id}/role", {"role": "owner"}).status_code == 403
    response = admin.post("/console/members/invite", {"email": "boss@acme.test", "role": "owner"})
    assert response.status_code == 403
    assert admin.post(f"/console/members/{member_id}/role", {"role": "admin"}).status_code == 303


def test_the_last_owner_stays(owner: Browser) -> None:
    owner_id = _user_id(owner, "owner@acme.test")
    response = owner.post(f"/console/members/{owner_id}/role", {"role": "admin"})
    assert response.status_code == 409
    assert "at least one owner" in response.text


def test_removing_a_member_ends_their_sessions(owner: Browser, member: Browser) -> None:
    member_id = _user_id(owner, "member@acme.test")
    assert owner.post(f"/console/members/{member_id}/remove", {}).status_code == 303
    assert member.get("/console/keys").status_code == 303


def test_a_role_change_applies_at_once(owner: Browser, member: Browser) -> None:
    member_id = _user_id(owner, "member@acme.test")
    assert member.get("/console/audit").status_code == 403
    assert owner.post(f"/console/members/{member_id}/role", {"role": "admin"}).status_code == 303
    assert member.get("/console/audit").status_code == 200


def test_another_organization_sees_nothing(
    owner: Browser, make_browser: MakeBrowser, open_signup: None
) -> None:
    key_id, value = owner.create_key("acme key")
    project = owner.project_id()
    other = make_browser("192.0.2.80")
    other.sign_up("boss@globex.test", "Globex")
    assert other.get(f"/console/keys/{key_id}").status_code == 404
    assert other.get(f"/console/keys?project={project}").status_code == 404
    assert other.get(f"/console/keys/new?project={project}").status_code == 404
    for action in ("revoke", "roll", "disable", "enable", "rename"):
        response = other.post(f"/console/keys/{key_id}/{action}", {"name": "mine"})
        assert response.status_code == 404, action
    response = other.post("/console/keys", {"project": project, "name": "planted"})
    assert response.status_code == 404
    assert "acme key" not in other.get("/console/audit").text
    assert "No events." in other.get(f"/console/audit?key={key_id}").text
    owner_id = _user_id(owner, "owner@acme.test")
    assert other.post(f"/console/members/{owner_id}/remove", {}).status_code == 404
    assert owner.client.get("/api/v1/whoami", headers=bearer(value)).status_code == 200


def _user_id(browser: Browser, email: str) -> str:
    import re

    page = browser.get("/console/members").text
    for match in re.finditer(r"/console/members/(usr_\w+)/role", page):
        row_start = page.rfind("<tr>", 0, match.start())
        if email in page[row_start : match.start()]:
            return match.group(1)
    found = re.search(rf"{re.escape(email)}.*?(usr_\w+)", page, re.S)
    assert found, page
    return found.group(1)
