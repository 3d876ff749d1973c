"""The console's key policies page (preview before save) and the create dialog, which
follows the lifetime policy."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from keyplane.service.events.policies import KeyPolicy
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey
from tests.console.conftest import Browser
from tests.support import Clock

PAGE = "/console/settings/key-policies"


def _form(**fields: str) -> dict[str, object]:
    return {
        "max_lifetime_days": "",
        "default_expiry_days": "",
        "stale_days": "",
        "stale_disable": "",
        "stale_revoke_days": "",
        **fields,
    }


def _expiry_options(owner: Browser) -> list[str]:
    page = owner.get("/console/keys/new", params={"project": owner.project_id()})
    select = re.search(r'<select id="key-expires".*?</select>', page.text, re.S)
    assert select
    return re.findall(r'<option value="(\w+)"\s*(selected)?', select.group(0))


def test_preview_lists_the_keys_and_saves_nothing_then_save(owner: Browser) -> None:
    owner.create_key("forever")
    preview = owner.post(PAGE + "/preview", _form(max_lifetime_days="90"), token_from=PAGE)
    assert preview.status_code == 200
    assert "Preview: what this policy would touch" in preview.text
    assert "forever" in preview.text
    assert "not changed by the policy" in preview.text
    assert 'value=""' in owner.get(PAGE).text.split('id="max-lifetime"')[1][:80]
    saved = owner.post(
        PAGE, _form(max_lifetime_days="90", default_expiry_days="30"), token_from=PAGE
    )
    assert saved.status_code == 303
    page = owner.get(PAGE)
    assert 'value="90"' in page.text
    assert 'value="30"' in page.text


def test_bad_values_are_a_422_with_the_reason(owner: Browser) -> None:
    for form, reason in (
        (_form(stale_days="3"), "stale_days is 8 to 3650"),
        (_form(stale_days="x"), "a whole number of days"),
        (_form(max_lifetime_days="10", default_expiry_days="20"), "cannot be longer"),
    ):
        response = owner.post(PAGE, form, token_from=PAGE)
        assert response.status_code == 422
        assert reason in response.text
    assert 'value=""' in owner.get(PAGE).text.split('id="stale-days"')[1][:60]


def test_the_create_dialog_follows_the_policy(owner: Browser) -> None:
    options = _expiry_options(owner)
    assert ("never", "selected") in options
    owner.post(PAGE, _form(max_lifetime_days="60", default_expiry_days="30"), token_from=PAGE)
    options = _expiry_options(owner)
    values = [value for value, _ in options]
    assert "never" not in values
    assert "90" not in values
    assert "365" not in values
    assert ("default", "selected") in options
    assert "max" in values
    # The default choice: the service gives the key the default expiry.
    key_id, _ = owner.create_key("defaulted", expires="default")
    assert "Never" not in owner.get(f"/console/keys/{key_id}").text.split("Expires")[1][:200]
    refused = owner.post(
        "/console/keys", {"project": owner.project_id(), "name": "k", "expires": "never"}
    )
    assert refused.status_code == 201  # "never" under a default: the default applies
    owner.post(PAGE, _form(max_lifetime_days="60"), token_from=PAGE)
    refused = owner.post(
        "/console/keys", {"project": owner.project_id(), "name": "k", "expires": "never"}
    )
    assert refused.status_code == 422
    assert "must expire within 60 days" in refused.text


def test_a_key_the_policy_disabled_says_so_and_enabling_clears_it(
    owner: Browser, services: Services, clock: Clock
) -> None:
    key_id, _ = owner.create_key("idle")
    with services.database.read() as session:
        organization_id = session.scalars(
            select(ApiKey.organization_id).where(ApiKey.id == key_id)
        ).one()
    services.key_policies.set_policy(
        Caller(organization_id, ("*",), Actor.operator()),
        KeyPolicy(stale_days=30, stale_disable=True),
    )
    clock.advance(timedelta(days=31))
    services.scheduler.run_once()
    assert owner.sign_in("owner@acme.test").status_code == 303  # the session ended meanwhile
    page = owner.get(f"/console/keys/{key_id}")
    assert "Disabled by the stale-key policy" in page.text
    enabled = owner.post(f"/console/keys/{key_id}/enable", {}, token_from=f"/console/keys/{key_id}")
    assert enabled.status_code == 303
    assert "Disabled by the stale-key policy" not in owner.get(f"/console/keys/{key_id}").text
    services.scheduler.run_once()  # enabling was activity: not disabled again
    assert services.keys.get(Caller(organization_id, ("*",), Actor.operator()), key_id).enabled
