"""The console shows a leaked key: a badge in the keys table, an alert on its page,
and a banner on every page of its organization."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from keyplane.service.keys.leaks import GitHubKeyring
from keyplane.service.services import Services
from tests.console.conftest import Browser
from tests.security.github import GitHubSigner, report

LEAK_URL = "https://github.com/octo/repo/blob/abc/notebook.ipynb"


def _report(client: TestClient, services: Services, *keys: str) -> None:
    signer = GitHubSigner.generate()
    services.leaks.keyring = GitHubKeyring.from_document(signer.document())
    body = report(*keys, url=LEAK_URL)
    response = client.post("/api/v1/leaks/github", content=body, headers=signer.headers(body))
    assert response.status_code == 200


def test_if_a_key_leaks_then_the_console_shows_it_on_the_table_the_key_and_every_page(
    owner: Browser, client: TestClient, services: Services
) -> None:
    leaked_id, leaked_value = owner.create_key("leaky")
    safe_id, _ = owner.create_key("safe")
    assert "leak-banner" not in owner.get("/console/keys").text

    _report(client, services, leaked_value)

    table = owner.get("/console/keys?status=all").text
    row = table.split(f'data-key-id="{leaked_id}"', 1)[1].split("</tr>", 1)[0]
    assert "badge-leaked" in row
    other_row = table.split(f'data-key-id="{safe_id}"', 1)[1].split("</tr>", 1)[0]
    assert "badge-leaked" not in other_row
    detail = owner.get(f"/console/keys/{leaked_id}").text
    assert "This key was found in public" in detail
    assert LEAK_URL in detail
    assert "revoked it at once" in detail
    assert "This key was found in public" not in owner.get(f"/console/keys/{safe_id}").text
    for page in ("/console/keys", "/console/projects", "/console/audit", "/console/members"):
        assert "leak-banner" in owner.get(page).text, page
    audit = owner.get("/console/audit?action=key.leaked").text
    assert LEAK_URL in audit or leaked_id in audit


def test_if_another_organization_has_a_leak_then_this_one_sees_no_banner(
    owner: Browser,
    client: TestClient,
    services: Services,
    make_browser: Callable[..., Browser],
    open_signup: None,
) -> None:
    _, value = owner.create_key("leaky")
    stranger = make_browser()
    stranger.sign_up("someone@globex.test", "Globex")
    _report(client, services, value)
    assert "leak-banner" in owner.get("/console/keys").text
    assert "leak-banner" not in stranger.get("/console/keys").text
