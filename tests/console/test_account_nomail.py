"""Without a mail server the console still works: nothing is queued, a verification
link is shown to the person who asked, a reset is the operator's."""

from __future__ import annotations

from sqlalchemy import func, select

from keyplane.service.services import Services
from keyplane.storage.models import OutboxMessage, User
from tests.console.conftest import Browser


def test_forgot_password_sends_people_to_their_administrator(browser: Browser) -> None:
    page = browser.get("/console/forgot-password")
    assert "keyplane admin reset-password" in page.text
    response = browser.post(
        "/console/forgot-password", {"email": "x@y.test"}, token_from="/console/signin"
    )
    assert response.status_code == 200
    assert "keyplane admin reset-password" in response.text


def test_the_verification_link_is_shown_to_the_signed_in_person(
    owner: Browser, services: Services
) -> None:
    assert "not verified yet" not in owner.get("/console/keys").text  # no nagging without mail
    page = owner.post("/console/account/verify-email", {}, token_from="/console/account")
    assert page.status_code == 200
    link = page.text.split('id="verification-link"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    path = "/" + link.split("/", 3)[3].replace("&amp;", "&")
    token = path.split("token=", 1)[1]
    done = owner.post("/console/verify-email", {"token": token}, token_from=path)
    assert done.status_code == 303
    with services.database.read() as session:
        assert session.scalar(select(User.email_verified_at)) is not None
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_the_sign_in_page_links_to_forgot_password(browser: Browser) -> None:
    assert "/console/forgot-password" in browser.get("/console/signin").text
