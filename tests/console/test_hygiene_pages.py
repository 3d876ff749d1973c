"""The console's canary keys, "who still uses this key", and mail preferences."""

from __future__ import annotations

from fastapi.testclient import TestClient

from keyplane.service.events.notify import MAILED
from keyplane.service.services import Services
from tests.console.conftest import Browser
from tests.support import bearer


def test_a_canary_made_in_the_console_is_marked_and_refused(
    owner: Browser, client: TestClient, services: Services
) -> None:
    key_id, value = owner.create_key("wiki bait", canary="1")
    page = owner.get(f"/console/keys/{key_id}").text
    assert "A canary key" in page
    assert 'badge-canary">Canary' in page
    assert "badge-canary" in owner.get("/console/keys").text
    assert client.get("/api/v1/whoami", headers=bearer(value)).status_code == 401
    services.usage.flush()
    trail = owner.get(f"/console/keys/{key_id}").text
    assert "key.canary_used" in trail


def test_the_key_page_and_revoke_dialogs_say_who_still_uses_the_key(
    owner: Browser, client: TestClient, services: Services
) -> None:
    key_id, value = owner.create_key("ci")
    assert (
        "No program used it in the last 7 days." in owner.get(f"/console/keys/{key_id}/revoke").text
    )
    headers = {**bearer(value), "user-agent": "deploy-bot/2.1"}
    assert client.get("/api/v1/whoami", headers=headers).is_success
    services.usage.flush()
    page = owner.get(f"/console/keys/{key_id}").text
    assert "Who still uses this key" in page
    assert "<code>203.0.113.7</code>" in page
    assert "deploy-bot/2.1" in page
    phrase = "1 caller (client addresses) used it in the last 7 days; they will stop working."
    assert phrase in page
    assert phrase in owner.get(f"/console/keys/{key_id}/revoke").text
    assert f'data-key-callers="{phrase}"' in owner.get("/console/keys").text


def test_mail_preferences_are_saved_per_person(owner: Browser, services: Services) -> None:
    page = owner.get("/console/account/notifications")
    assert page.status_code == 200
    assert page.text.count('name="mailed"') == len(MAILED)
    kept = [name for name in MAILED if name != "key.expiring"]
    saved = owner.post(
        "/console/account/notifications",
        {"mailed": kept},
        token_from="/console/account/notifications",
    )
    assert saved.status_code == 303
    again = owner.get("/console/account/notifications").text
    assert "Your mail preferences are saved." not in again  # the notice is on the redirect
    assert 'value="key.expiring" >' in again or 'value="key.expiring">' in again
    assert 'value="key.revoked" checked' in again
    bad = owner.post(
        "/console/account/notifications",
        {"mailed": ["no.such.event"]},
        token_from="/console/account/notifications",
    )
    assert bad.status_code == 303  # unknown names are simply not "kept"
