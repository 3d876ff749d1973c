"""Every console redirect target goes through one check (issue 11, finding 8): a
bad ``next=`` falls back to the keys page, decided before any session is made."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from keyplane.service.services import Services
from keyplane.storage.models import ConsoleSession
from tests.console.conftest import PASSWORD, Browser

MakeBrowser = Callable[..., Browser]

BAD_TARGETS = [
    "/console/keys\r\nSet-Cookie: evil=1",
    "/console/keys\nX: y",
    "/console/keys\r",
    "/console/keys/\u2603",
    "/console/keys/\u00e9",
    "/console/keys\x00",
    "/console/keys\t",
    "/console/keys%0d%0aSet-Cookie:%20evil=1",
    "//evil.test/console/keys",
    "/\\evil.test",
    "/console/\\\\evil.test",
    "https://evil.test/console/keys",
    "javascript:alert(1)",
    "/console//evil.test",
    "/console/%2f%2fevil.test",
    "/console/%5cevil.test",
    "/console/../api/v1/whoami",
    "/console/%2e%2e/api",
    "/console/keys#frag",
    "/console/keys with space",
    "/elsewhere",
    "console/keys",
    "/console",
    "/console/" + "a" * 600,
]
GOOD_TARGETS = [
    "/console/keys",
    "/console/keys?project=prj_abc&status=active",
    "/console/join?token=rYh_4a5pbRbIbYGkW7eZNAhYH_p9WciIJA5GiJP4zQY",
    "/console/keys/key_123%20x",
]


def _sessions(services: Services) -> int:
    with services.database.read() as session:
        return session.scalar(select(func.count()).select_from(ConsoleSession)) or 0


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_a_bad_next_signs_in_to_the_keys_page(
    owner: Browser, make_browser: MakeBrowser, services: Services, target: str
) -> None:
    before = _sessions(services)
    browser = make_browser()
    response = browser.post(
        "/console/signin",
        {"email": "owner@acme.test", "password": PASSWORD, "next": target},
        token_from="/console/signin",
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/console/keys"
    # Exactly the one session whose cookie this answer hands over.
    assert _sessions(services) == before + 1
    assert browser.get("/console/keys").status_code == 200


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_a_bad_next_is_not_put_into_the_sign_in_page(
    browser: Browser, services: Services, target: str
) -> None:
    response = browser.client.get("/console/signin", params={"next": target})
    assert response.status_code in {200, 422}
    if response.status_code == 200:
        assert 'name="next" value="/console/keys"' in response.text


@pytest.mark.parametrize("target", GOOD_TARGETS)
def test_a_console_path_is_where_sign_in_goes_back_to(
    owner: Browser, make_browser: MakeBrowser, target: str
) -> None:
    response = make_browser().post(
        "/console/signin",
        {"email": "owner@acme.test", "password": PASSWORD, "next": target},
        token_from="/console/signin",
    )
    assert response.status_code == 303
    assert response.headers["location"] == target


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_the_check_refuses_what_the_form_refuses(target: str) -> None:
    from keyplane.console.web import redirect_target

    assert redirect_target(target) is None


def test_a_signed_out_visit_to_an_odd_path_still_redirects_cleanly(browser: Browser) -> None:
    response = browser.get("/console/keys/\u2603")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/signin"
    response = browser.get("/console/keys?project=prj_x")
    assert (
        response.headers["location"] == "/console/signin?next=%2Fconsole%2Fkeys%3Fproject%3Dprj_x"
    )


@pytest.mark.parametrize(
    "target", ["/console/keys\r\nSet-Cookie: evil=1", "/console/keys/\u2603", "//evil.test"]
)
def test_a_real_server_answers_a_bad_next_with_the_keys_page_and_one_session(
    services: Services, target: str
) -> None:
    """Over real HTTP (Uvicorn), where a CR/LF in a header dropped the connection."""
    import re

    import httpx

    from keyplane.app import create_app
    from tests.live import serve_in_thread

    services.bootstrap(
        organization_name="Acme",
        project_name="Default",
        owner_email="owner@acme.test",
        owner_password=PASSWORD,
    )
    with (
        serve_in_thread(create_app(services)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        page = client.get("/console/signin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        response = client.post(
            "/console/signin",
            data={
                "csrf_token": token.group(1),
                "email": "owner@acme.test",
                "password": PASSWORD,
                "next": target,
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/console/keys"
        assert "evil" not in response.headers.get("set-cookie", "")
        assert client.get("/console/keys").status_code == 200
    assert _sessions(services) == 1
