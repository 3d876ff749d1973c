"""Passkeys over HTTP, with a software authenticator at the configured origin."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update

from keyplane.config import Settings
from keyplane.service.services import Services
from keyplane.storage.models import AuditEvent, Organization, WebAuthnCredential
from tests.console.conftest import Browser
from tests.soft_authenticator import SoftAuthenticator

MakeBrowser = Callable[..., Browser]
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, public_url="http://console.test")


def csrf_of(browser: Browser, path: str) -> str:
    found = _TOKEN.search(browser.get(path).text)
    assert found
    return found.group(1)


def add_passkey(owner: Browser) -> SoftAuthenticator:
    device = SoftAuthenticator("console.test", "http://console.test")
    token = csrf_of(owner, "/console/account")
    options = owner.client.post(
        "/console/account/passkeys/options",
        data={"csrf_token": token},
        headers={"X-Requested-With": "fetch"},
    )
    assert options.status_code == 200, options.text
    answer = options.json()
    assert answer["options"]["rp"]["id"] == "console.test"
    assert answer["options"]["authenticatorSelection"]["residentKey"] == "required"
    done = owner.client.post(
        "/console/account/passkeys",
        data={
            "csrf_token": token,
            "token": answer["token"],
            "credential": device.create(json.dumps(answer["options"])),
            "name": "Laptop",
        },
    )
    assert done.status_code == 201, done.text  # the recovery codes page
    assert "Your recovery codes" in done.text
    return device


def test_passwordless_sign_in_over_http(
    owner: Browser, services: Services, make_browser: MakeBrowser
) -> None:
    device = add_passkey(owner)
    visitor = make_browser()
    token = csrf_of(visitor, "/console/signin")
    options = visitor.client.post("/console/signin/passkey/options", data={"csrf_token": token})
    assert options.status_code == 200
    answer = options.json()
    assert answer["options"]["userVerification"] == "required"
    signed_in = visitor.client.post(
        "/console/signin/passkey",
        data={
            "csrf_token": token,
            "token": answer["token"],
            "credential": device.get(json.dumps(answer["options"])),
        },
    )
    assert signed_in.status_code == 303, signed_in.text
    assert visitor.get("/console/keys").status_code == 200
    # The same assertion again: the challenge is spent.
    again = visitor.client.post(
        "/console/signin/passkey",
        data={
            "csrf_token": csrf_of(make_browser("198.51.100.99"), "/console/signin"),
            "token": answer["token"],
            "credential": device.get(json.dumps(answer["options"])),
        },
    )
    assert again.status_code in (401, 403)


def test_the_console_under_another_name_is_told_where_passkeys_work(
    owner: Browser, services: Services
) -> None:
    token = csrf_of(owner, "/console/account")
    answer = owner.client.post(
        "/console/account/passkeys/options",
        data={"csrf_token": token},
        headers={"Host": "evil.test", "X-Requested-With": "fetch"},
    )
    assert answer.status_code == 400
    assert "http://console.test" in answer.text
    with services.database.read() as session:
        assert session.scalar(select(WebAuthnCredential)) is None


@pytest.mark.parametrize(
    "credential", ["", "{", "[1]", '{"id": 1}', '{"rawId": "AAAA", "response": 5}']
)
def test_garbage_credentials_get_a_4xx(
    owner: Browser, make_browser: MakeBrowser, services: Services, credential: str
) -> None:
    add_passkey(owner)
    visitor = make_browser()
    token = csrf_of(visitor, "/console/signin")
    options = visitor.client.post("/console/signin/passkey/options", data={"csrf_token": token})
    answer = visitor.client.post(
        "/console/signin/passkey",
        data={"csrf_token": token, "token": options.json()["token"], "credential": credential},
    )
    assert answer.status_code == 401
    with services.database.read() as session:
        actions = [row.action for row in session.scalars(select(AuditEvent))]
    assert actions.count("user.signed_in") == 1  # the owner's sign-up only


def test_a_passkey_meets_the_organizations_policy_at_enrolment(
    owner: Browser, services: Services, make_browser: MakeBrowser
) -> None:
    link = owner.invite("dev@acme.test")
    member = make_browser()
    assert member.join(link).status_code == 303
    with services.database.write() as session:
        session.execute(update(Organization).values(require_mfa=True))
    member.set_session(None)
    assert member.sign_in("dev@acme.test").headers["location"] == "/console/signin/enrol"
    token = csrf_of(member, "/console/signin/enrol")
    options = member.client.post(
        "/console/signin/enrol/passkey/options", data={"csrf_token": token}
    )
    assert options.status_code == 200, options.text
    answer = options.json()
    device = SoftAuthenticator("console.test", "http://console.test")
    done = member.client.post(
        "/console/signin/enrol/passkey",
        data={
            "csrf_token": token,
            "token": answer["token"],
            "credential": device.create(json.dumps(answer["options"])),
        },
    )
    assert done.status_code == 201, done.text
    assert "Your recovery codes" in done.text
    assert member.get("/console/keys").status_code == 200


def test_removing_the_last_passkey_takes_the_recovery_codes(
    owner: Browser, services: Services
) -> None:
    add_passkey(owner)
    with services.database.read() as session:
        row = session.scalar(select(WebAuthnCredential))
        assert row is not None
        passkey_id, user_id = row.id, row.user_id
    assert "Laptop" in owner.get("/console/account").text
    removed = owner.post(
        f"/console/account/passkeys/{passkey_id}/remove", {}, token_from="/console/account"
    )
    assert removed.headers["location"] == "/console/account?notice=passkey-removed"
    status = services.factors.status(user_id)
    assert not status.has_factor
    assert status.recovery_codes_left == 0
    missing = owner.post(
        f"/console/account/passkeys/{passkey_id}/remove", {}, token_from="/console/account"
    )
    assert missing.status_code == 404
