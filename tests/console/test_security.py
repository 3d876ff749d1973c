"""Sessions, CSRF, throttling, headers and the reveal-once rule, over HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import select

from keyplane.service.services import Services
from keyplane.storage.models import ApiKey, AuditEvent, ConsoleSession
from tests.console.conftest import PASSWORD, Browser
from tests.support import bearer

MakeBrowser = Callable[..., Browser]


def _key_count(services: Services) -> int:
    with services.database.read() as session:
        return len(session.scalars(select(ApiKey)).all())


# -- CSRF --------------------------------------------------------------------


@pytest.mark.parametrize(
    "token", [pytest.param(None, id="missing"), pytest.param("0" * 64, id="wrong")]
)
def test_a_form_without_the_session_csrf_token_is_refused(
    owner: Browser, services: Services, token: str | None
) -> None:
    project = owner.project_id()
    data: dict[str, object] = {"project": project, "name": "sneaky"}
    if token is not None:
        data["csrf_token"] = token
    response = owner.client.post("/console/keys", data=data)
    assert response.status_code == 403
    assert "form could not be accepted" in response.text
    assert _key_count(services) == 0


def test_a_cross_site_post_is_refused_even_with_the_token(
    owner: Browser, services: Services
) -> None:
    token = owner.csrf()
    for headers in ({"Origin": "https://evil.test"}, {"Sec-Fetch-Site": "cross-site"}):
        response = owner.client.post(
            "/console/keys",
            data={"csrf_token": token, "project": owner.project_id(), "name": "x"},
            headers=headers,
        )
        assert response.status_code == 403
    assert _key_count(services) == 0


def sign_in_again(browser: Browser) -> str:
    """Sign in while still holding a session cookie; return the old session token."""
    old = browser.session_token
    browser.set_session(None)
    token = browser.csrf("/console/signin")
    browser.set_session(old)
    response = browser.client.post(
        "/console/signin",
        data={"csrf_token": token, "email": "owner@acme.test", "password": PASSWORD},
    )
    assert response.status_code == 303
    return old


def test_the_csrf_token_is_bound_to_the_session(owner: Browser, services: Services) -> None:
    old_token = owner.csrf()
    project = owner.project_id()
    sign_in_again(owner)  # a new session, so a new CSRF token
    response = owner.client.post(
        "/console/keys", data={"csrf_token": old_token, "project": project, "name": "x"}
    )
    assert response.status_code == 403
    assert _key_count(services) == 0


def test_sign_in_needs_the_double_submit_token(browser: Browser, services: Services) -> None:
    browser.sign_up()
    browser.client.cookies.clear()
    response = browser.client.post(
        "/console/signin", data={"email": "owner@acme.test", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "keyplane_session" not in response.headers.get("set-cookie", "")


def test_sign_out_needs_the_csrf_token(owner: Browser) -> None:
    assert owner.client.post("/console/signout", data={}).status_code == 403
    assert owner.get("/console/keys").status_code == 200


# -- sessions ----------------------------------------------------------------


def test_session_cookie_is_httponly_samesite_lax_and_scoped_to_the_console(
    browser: Browser,
) -> None:
    cookie = browser.sign_up().headers["set-cookie"].lower()
    assert "keyplane_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/console" in cookie
    assert "secure" not in cookie


def test_session_cookie_is_secure_over_https(make_browser: MakeBrowser) -> None:
    browser = make_browser(https=True)
    cookie = browser.sign_up().headers["set-cookie"].lower()
    assert "secure" in cookie


def test_sessions_are_stored_as_hashes(owner: Browser, services: Services) -> None:
    token = owner.session_token
    with services.database.read() as session:
        rows = session.scalars(select(ConsoleSession)).all()
        assert [row.token_hash for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
        for row in rows:
            assert token not in repr(vars(row))


def test_sign_in_rotates_the_session(owner: Browser, make_browser: MakeBrowser) -> None:
    before = sign_in_again(owner)
    after = owner.session_token
    assert after != before
    replay = make_browser()
    replay.set_session(before)
    assert replay.get("/console/keys").status_code == 303


def test_a_planted_session_cookie_is_replaced_at_sign_in(
    browser: Browser, make_browser: MakeBrowser
) -> None:
    browser.sign_up()
    victim = make_browser()
    victim.set_session("planted-by-attacker")
    victim.sign_in("owner@acme.test")
    assert victim.session_token != "planted-by-attacker"


def test_sign_out_ends_the_session(owner: Browser, make_browser: MakeBrowser) -> None:
    token = owner.session_token
    response = owner.post("/console/signout", {})
    assert response.status_code == 303
    replay = make_browser()
    replay.set_session(token)
    page = replay.get("/console/keys")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/console/signin")


def test_changing_the_password_signs_out_other_sessions(
    owner: Browser, make_browser: MakeBrowser
) -> None:
    laptop = make_browser("198.51.100.30")
    assert laptop.sign_in("owner@acme.test").status_code == 303
    response = owner.post(
        "/console/account/password",
        {
            "current_password": PASSWORD,
            "password": "a brand new password",
            "confirm_password": "a brand new password",
        },
        token_from="/console/account",
    )
    assert response.status_code == 303
    assert owner.get("/console/keys").status_code == 200
    assert laptop.get("/console/keys").status_code == 303
    assert laptop.sign_in("owner@acme.test").status_code == 401
    assert laptop.sign_in("owner@acme.test", "a brand new password").status_code == 303


def test_wrong_current_password_changes_nothing(owner: Browser, make_browser: MakeBrowser) -> None:
    response = owner.post(
        "/console/account/password",
        {"current_password": "not it at all", "password": "x" * 12, "confirm_password": "x" * 12},
        token_from="/console/account",
    )
    assert response.status_code == 422
    assert make_browser().sign_in("owner@acme.test").status_code == 303


def test_pages_need_a_session(browser: Browser) -> None:
    for path in ("/console/keys", "/console/projects", "/console/audit", "/console/members"):
        response = browser.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/signin?next=")


def test_next_cannot_send_a_signed_in_user_elsewhere(browser: Browser) -> None:
    browser.sign_up()
    browser.set_session(None)
    response = browser.post(
        "/console/signin",
        {"email": "owner@acme.test", "password": PASSWORD, "next": "//evil.test/x"},
        token_from="/console/signin",
    )
    assert response.headers["location"] == "/console/keys"


# -- throttling --------------------------------------------------------------


def test_sign_in_is_throttled_per_account(browser: Browser, make_browser: MakeBrowser) -> None:
    browser.sign_up()
    for attempt in range(5):
        ip = f"198.51.100.{40 + attempt}"
        assert make_browser(ip).sign_in("owner@acme.test", "wrong password!").status_code == 401
    # The right password, from yet another address, is refused for now.
    refused = make_browser("198.51.100.99").sign_in("owner@acme.test")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "keyplane_session" not in refused.headers.get("set-cookie", "")


def test_sign_in_is_throttled_per_client_ip(browser: Browser, make_browser: MakeBrowser) -> None:
    browser.sign_up()
    attacker = make_browser("192.0.2.66")
    for attempt in range(20):
        assert attacker.sign_in(f"user{attempt}@acme.test", "wrong password!").status_code == 401
    assert attacker.sign_in("owner@acme.test").status_code == 429
    assert make_browser("192.0.2.67").sign_in("owner@acme.test").status_code == 303


def test_a_failed_sign_in_says_the_same_for_unknown_users_and_wrong_passwords(
    owner: Browser, make_browser: MakeBrowser
) -> None:
    unknown = make_browser().sign_in("nobody@acme.test", "whatever12345")
    wrong = make_browser("198.51.100.21").sign_in("owner@acme.test", "whatever12345")
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong e-mail address or password." in unknown.text
    assert "Wrong e-mail address or password." in wrong.text


# -- headers -----------------------------------------------------------------


def test_console_pages_carry_security_headers(owner: Browser, browser: Browser) -> None:
    for path in ("/console/keys", "/console/signin", "/console/nope"):
        headers = owner.get(path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"


def test_static_files_ship_with_the_package(owner: Browser) -> None:
    for name, kind in (("console.css", "text/css"), ("console.js", "javascript")):
        response = owner.get(f"/console/static/{name}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
        assert response.headers["x-content-type-options"] == "nosniff"


def test_the_api_is_left_alone(owner: Browser) -> None:
    response = owner.get("/healthz")
    assert "content-security-policy" not in response.headers
    assert owner.get("/").headers["location"] == "/console/keys"


# -- the reveal-once rule ------------------------------------------------------


def test_a_key_is_shown_once_and_never_again(owner: Browser, services: Services) -> None:
    key_id, value = owner.create_key("laptop")
    assert owner.client.get("/api/v1/whoami", headers=bearer(value)).status_code == 200
    for path in (
        "/console/keys",
        "/console/keys?status=all",
        f"/console/keys/{key_id}",
        "/console/audit",
        f"/console/audit?key={key_id}",
    ):
        page = owner.get(path)
        assert page.status_code == 200
        assert value not in page.text
        assert value[-10:] not in page.text
    with services.database.read() as session:
        for event in session.scalars(select(AuditEvent)).all():
            assert value not in repr(event.details)


def test_the_reveal_answer_is_not_cached_and_puts_the_key_in_no_url_or_cookie(
    owner: Browser,
) -> None:
    response = owner.post(
        "/console/keys",
        {"project": owner.project_id(), "name": "laptop"},
        headers={"X-Requested-With": "fetch"},
    )
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    value = "kp_" + response.text.split('value="kp_', 1)[1].split('"', 1)[0]
    assert "set-cookie" not in response.headers
    assert "location" not in response.headers
    for link in response.text.split('href="')[1:]:
        assert value not in link.split('"', 1)[0]


def test_rolling_shows_the_new_value_once_and_keeps_the_old_one_for_the_grace(
    owner: Browser,
) -> None:
    key_id, old = owner.create_key("laptop")
    response = owner.post(f"/console/keys/{key_id}/roll", {"grace_seconds": "3600"})
    assert response.status_code == 201
    new = "kp_" + response.text.split('value="kp_', 1)[1].split('"', 1)[0]
    assert new != old
    assert owner.client.get("/api/v1/whoami", headers=bearer(old)).status_code == 200
    assert owner.client.get("/api/v1/whoami", headers=bearer(new)).status_code == 200
    assert new not in owner.get("/console/keys").text


def _code_with(html_text: str, secret: str) -> list[str]:
    import html as html_module
    import re

    blocks = re.findall(r"<code>(.*?)</code>", html_text, flags=re.DOTALL)
    return [html_module.unescape(block) for block in blocks if secret in block]


def test_no_suggested_command_puts_the_key_on_a_command_line(owner: Browser) -> None:
    """A command line lands in shell history: the key appears only as the line to add
    to a start-up file with an editor, and the commands read it from a prompt."""
    response = owner.post("/console/keys", {"project": owner.project_id(), "name": "laptop"})
    assert response.status_code == 201
    import re

    found = re.search(r'value="(kp_\w+)"', response.text)
    assert found
    secret = found.group(1)
    assert _code_with(response.text, secret) == [f"export KEYPLANE_API_KEY={secret}"]
    assert "in an editor" in response.text
    assert "read -rs" in response.text
    assert "-AsSecureString" in response.text
