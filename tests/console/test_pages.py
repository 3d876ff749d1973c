"""The console's pages and forms, over HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from keyplane.service.accounts.members import SignupPolicy
from keyplane.service.services import Services
from tests.console.conftest import PASSWORD, Browser
from tests.support import Clock, bearer

MakeBrowser = Callable[..., Browser]


def test_a_fresh_server_offers_sign_up_and_lands_on_the_keys_page(browser: Browser) -> None:
    assert browser.get("/").headers["location"] == "/console/keys"
    signin = browser.get("/console/signin")
    assert "Create an account" in signin.text
    response = browser.sign_up()
    assert response.headers["location"] == "/console/keys"
    page = browser.get("/console/keys")
    assert page.status_code == 200
    assert "<h1>API Keys</h1>" in page.text
    assert "No keys yet" in page.text
    assert "Default" in page.text


def test_sign_up_closes_after_the_first_organization(
    owner: Browser, make_browser: MakeBrowser
) -> None:
    stranger = make_browser()
    assert "Sign-up is closed" in stranger.get("/console/signup").text
    assert "Create an account" not in stranger.get("/console/signin").text
    response = stranger.post(
        "/console/signup",
        {"email": "eve@evil.test", "password": PASSWORD, "organization": "Evil"},
        token_from="/console/signin",
    )
    assert response.status_code == 403


def test_sign_up_can_be_turned_off(browser: Browser, services: Services) -> None:
    services.members.policy = SignupPolicy.OFF
    response = browser.post(
        "/console/signup",
        {"email": "a@acme.test", "password": PASSWORD, "organization": "Acme"},
        token_from="/console/signin",
    )
    assert response.status_code == 403


def test_open_sign_up_never_sets_the_password_of_an_existing_address(
    owner: Browser, make_browser: MakeBrowser, open_signup: None
) -> None:
    response = make_browser().post(
        "/console/signup",
        {"email": "owner@acme.test", "password": "another password", "organization": "Other"},
        token_from="/console/signup",
    )
    assert response.status_code == 401
    assert "Wrong e-mail address or password" in response.text
    assert (
        make_browser("192.0.2.8").sign_in("owner@acme.test", "another password").status_code == 401
    )
    assert make_browser("192.0.2.9").sign_in("owner@acme.test").status_code == 303


def test_open_sign_up_with_an_accounts_own_password_adds_an_organization_to_it(
    owner: Browser, make_browser: MakeBrowser, open_signup: None
) -> None:
    again = make_browser("192.0.2.7")
    assert again.sign_up("owner@acme.test", "Second").status_code == 303
    assert "Second" in again.get("/console/keys").text


def test_sign_up_explains_a_short_password(browser: Browser) -> None:
    response = browser.post(
        "/console/signup",
        {"email": "a@acme.test", "password": "short", "organization": "Acme"},
        token_from="/console/signup",
    )
    assert response.status_code == 422
    assert "at least 10 characters" in response.text


def test_an_invitation_link_works_once(owner: Browser, make_browser: MakeBrowser) -> None:
    link = owner.invite("new@acme.test")
    assert "Join Acme" in make_browser().get(link).text
    assert make_browser().join(link).status_code == 303
    again = make_browser("192.0.2.10")
    assert again.get(link).status_code == 404
    assert again.join(link).status_code == 404
    assert "new@acme.test" in owner.get("/console/members").text


def test_a_revoked_or_expired_invitation_is_refused(
    owner: Browser, make_browser: MakeBrowser, clock: Clock
) -> None:
    revoked = owner.invite("a@acme.test")
    invitation_id = re.search(
        r"/console/invitations/(inv_\w+)/revoke", owner.get("/console/members").text
    )
    assert invitation_id
    owner.post(f"/console/invitations/{invitation_id.group(1)}/revoke", {})
    assert make_browser().join(revoked).status_code == 404
    expired = owner.invite("b@acme.test")
    clock.advance(timedelta(days=8))
    assert make_browser("192.0.2.11").join(expired).status_code == 404


def test_the_keys_page_filters_by_status_and_switches_projects(owner: Browser) -> None:
    _live, _ = owner.create_key("live key")
    dead, _ = owner.create_key("dead key")
    owner.post(f"/console/keys/{dead}/revoke", {})
    active = owner.get("/console/keys").text
    assert "live key" in active
    assert "dead key" not in active
    revoked = owner.get("/console/keys?status=revoked").text
    assert "dead key" in revoked
    assert "live key" not in revoked
    every = owner.get("/console/keys?status=all").text
    assert "dead key" in every
    assert "live key" in every
    created = owner.post("/console/projects", {"name": "Production"})
    assert created.status_code == 303
    production = re.search(r"project=(prj_\w+)", created.headers["location"])
    assert production
    other = owner.get(f"/console/keys?project={production.group(1)}").text
    assert "live key" not in other
    assert "No keys yet" in other
    assert owner.get("/console/keys?status=bogus").status_code == 422


def test_create_key_with_expiry_and_scopes(owner: Browser, services: Services) -> None:
    key_id, _ = owner.create_key("ci", expires="90", scopes=["keys:read"], other_scopes="jobs:run")
    caller = services.accounts.operator_caller("Acme")
    key = services.keys.get(caller, key_id)
    assert key.scopes == ("jobs:run", "keys:read")
    assert key.expires_at is not None
    assert timedelta(days=89) < key.expires_at - services.clock() <= timedelta(days=90)
    custom, _ = owner.create_key("until", expires="custom", expires_on="2099-01-31")
    assert services.keys.get(caller, custom).expires_at == datetime(2099, 1, 31, tzinfo=UTC)


def test_create_key_form_errors_are_shown_in_the_form(owner: Browser) -> None:
    project = owner.project_id()
    for fields, message in (
        ({"name": "  "}, "a name is 1 to 200 characters"),
        ({"name": "x", "expires": "custom", "expires_on": ""}, "pick an expiry date"),
        ({"name": "x", "expires": "custom", "expires_on": "2001-01-01"}, "in the future"),
        ({"name": "x", "other_scopes": "NOT A SCOPE"}, "is not a scope"),
    ):
        response = owner.post(
            "/console/keys", {"project": project, **fields}, headers={"X-Requested-With": "fetch"}
        )
        assert response.status_code == 422
        assert message in response.text
        assert 'name="name"' in response.text  # the form again, inside the dialog


def test_last_used_shows_never_then_a_relative_time(
    owner: Browser, services: Services, clock: Clock
) -> None:
    key_id, value = owner.create_key("laptop")
    row = _row(owner.get("/console/keys").text, "laptop")
    assert "Never" in row
    owner.client.get("/api/v1/whoami", headers={**bearer(value), "User-Agent": "curl/8.0"})
    services.usage.flush()
    clock.advance(timedelta(seconds=42))
    row = _row(owner.get("/console/keys").text, "laptop")
    assert "42 seconds ago" in row
    assert "203.0.113.7" in row
    assert "curl/8.0" in row
    detail = owner.get(f"/console/keys/{key_id}").text
    assert "curl/8.0" in detail
    assert "No usage recorded yet." not in detail
    used_on = (clock() - timedelta(seconds=42)).date().isoformat()
    assert f"<title>{used_on}: 1 request</title>" in detail


def test_a_key_never_used_has_no_chart(owner: Browser) -> None:
    key_id, _ = owner.create_key("idle")
    assert "No usage recorded yet." in owner.get(f"/console/keys/{key_id}").text


def test_key_detail_rename_disable_enable(owner: Browser, services: Services) -> None:
    key_id, value = owner.create_key("laptop")
    assert owner.post(f"/console/keys/{key_id}/rename", {"name": "work laptop"}).status_code == 303
    assert "work laptop" in owner.get(f"/console/keys/{key_id}").text
    owner.post(f"/console/keys/{key_id}/disable", {})
    page = owner.get(f"/console/keys/{key_id}?notice=disabled").text
    assert "Key disabled." in page
    assert ">Enable</button>" in page
    assert owner.client.get("/api/v1/whoami", headers=bearer(value)).status_code == 401
    owner.post(f"/console/keys/{key_id}/enable", {})
    assert owner.client.get("/api/v1/whoami", headers=bearer(value)).status_code == 200
    trail = owner.get(f"/console/keys/{key_id}").text
    for action in ("key.created", "key.updated", "key.disabled", "key.enabled"):
        assert action in trail


def test_roll_refuses_an_unknown_grace_period(owner: Browser) -> None:
    key_id, _ = owner.create_key("laptop")
    response = owner.post(f"/console/keys/{key_id}/roll", {"grace_seconds": "99999999"})
    assert response.status_code == 422


def test_the_audit_log_filters_by_actor_action_and_key(owner: Browser) -> None:
    first, _ = owner.create_key("first")
    owner.create_key("second")
    owner.post(f"/console/keys/{first}/revoke", {})
    by_action = owner.get("/console/audit?action=key.revoked").text
    assert by_action.count("<tr>") == 2  # header + one event
    assert first in by_action
    by_key = owner.get(f"/console/audit?key={first}").text
    assert "key.created" in by_key
    assert "key.revoked" in by_key
    assert by_key.count("<tr>") == 3
    by_actor = owner.get("/console/audit?actor=owner@acme.test&action=key.created").text
    assert by_actor.count("<tr>") == 3
    assert owner.get("/console/audit?actor=nobody").text.count("No events.") == 1


def test_projects_page_lists_and_creates(owner: Browser) -> None:
    assert owner.post("/console/projects", {"name": "Staging"}).status_code == 303
    page = owner.get("/console/projects").text
    assert "Staging" in page
    assert "Default" in page
    duplicate = owner.post("/console/projects", {"name": "Staging"})
    assert duplicate.status_code == 422
    assert "already exists" in duplicate.text


def test_unknown_pages_and_bad_ids_are_html_404s(owner: Browser) -> None:
    for path in ("/console/nothing", "/console/keys/key_0000000000000000", "/console/keys/x"):
        response = owner.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")


def _row(page: str, name: str) -> str:
    start = page.index(f">{name}</a>")
    return page[start : page.index("</tr>", start)]


def test_the_signup_setting_is_read_from_the_environment(tmp_path: object) -> None:
    from pathlib import Path

    from keyplane.config import Settings

    assert Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path)}).signup == "first"
    for value in ("open", "OFF", "first"):
        settings = Settings.from_env(
            {"KEYPLANE_DATA_DIR": str(Path(str(tmp_path))), "KEYPLANE_SIGNUP": value}
        )
        assert settings.signup == value.lower()


def test_an_owner_bootstrapped_with_the_cli_signs_in(
    services: Services, make_browser: MakeBrowser
) -> None:
    services.bootstrap(
        organization_name="Initech",
        project_name="Default",
        owner_email="bill@initech.test",
        owner_password=PASSWORD,
    )
    browser = make_browser()
    assert browser.sign_in("bill@initech.test").status_code == 303
    page = browser.get("/console/keys").text
    assert "Management key" in page
    assert "by operator" in page
