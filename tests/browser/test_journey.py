"""The journey a new user takes, in Chromium, against a real ``keyplane serve``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.support import PageWatch, create_key, sign_up

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password"


def whoami(base: str, key: str) -> httpx.Response:
    return httpx.get(f"{base}/api/v1/whoami", headers={"Authorization": f"Bearer {key}"})


def last_used_cell(page: Any, name: str) -> Any:
    return page.get_by_role("row").filter(has_text=name).locator("td.last-used")


def test_sign_up_create_copy_use_and_revoke_a_key(
    browser: Any, console_server: str, tmp_path: Path
) -> None:
    base = console_server
    context = browser.new_context(base_url=base)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    watch = PageWatch(page)

    sign_up(page, base, email="ada@example.com", password=PASSWORD, organization="Analytical")
    assert page.url.endswith("/console/keys")

    key = create_key(page, "laptop")
    assert re.fullmatch(r"kp_[0-9A-Za-z]{36}", key)
    page.get_by_text("will not be shown again").wait_for()
    for snippet in (
        f"export KEYPLANE_API_KEY={key}",
        "Read-Host 'Paste your key' -AsSecureString",
        'os.getenv("KEYPLANE_API_KEY")',
    ):
        assert snippet in page.content()

    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download .env").click()
    download = download_info.value
    assert download.suggested_filename == "keyplane.env"
    assert Path(download.path()).read_text() == f"KEYPLANE_API_KEY={key}\n"

    page.get_by_role("link", name="Done").click()
    page.get_by_role("row").filter(has_text="laptop").wait_for()
    assert last_used_cell(page, "laptop").inner_text().strip() == "Never"
    assert key not in page.content()

    assert whoami(base, key).status_code == 200

    page.reload()
    cell = last_used_cell(page, "laptop")
    assert re.match(r"(just now|\d+ seconds? ago)", cell.inner_text().strip())
    assert "127.0.0.1" in (cell.locator("time").get_attribute("title") or "")
    assert key not in page.content()

    page.get_by_role("button", name="Revoke").click()
    dialog = page.get_by_role("dialog")
    assert "laptop" in dialog.inner_text()
    dialog.get_by_role("button", name="Revoke key").click()
    page.get_by_text("Key revoked.").wait_for()

    refused = whoami(base, key)
    assert refused.status_code == 401
    assert refused.json()["code"] == "REVOKED"

    page.get_by_role("link", name="All").click()
    assert "Revoked" in page.get_by_role("row").filter(has_text="laptop").inner_text()
    page.get_by_role("link", name="laptop").click()
    page.get_by_role("heading", name="Audit trail").wait_for()
    assert "key.revoked" in page.content()
    page.get_by_role("img", name="Requests per day").wait_for()

    submit_a_job_with_a_key_for_ionq_clients(page, base)
    watch.assert_clean()
    context.close()


def submit_a_job_with_a_key_for_ionq_clients(page: Any, base: str) -> None:
    """From the empty Jobs page to a key with the job scopes, to a job the server ran."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    page.get_by_role("heading", name="No jobs yet").wait_for()
    assert f"export IONQ_API_URL={base}/v0.4" in page.content()
    page.get_by_role("link", name="Create a key for IonQ clients").click()
    assert page.get_by_label("jobs:read", exact=True).is_checked()
    assert page.get_by_label("jobs:write", exact=True).is_checked()
    page.get_by_label("Name", exact=True).fill("notebook")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_label("API key", exact=True).input_value()

    submitted = httpx.post(
        f"{base}/v0.4/jobs",
        json={
            "type": "ionq.circuit.v1",
            "name": "bell",
            "shots": 100,
            "input": {"qubits": 2, "circuit": [{"gate": "h", "targets": [0]}]},
        },
        headers={"Authorization": f"apiKey {key}"},
    )
    assert submitted.status_code == 200, submitted.text
    job_id = submitted.json()["id"]

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    row = page.get_by_role("row").filter(has_text=job_id)
    for _ in range(50):  # the server's workers run it within a moment
        if "Completed" in row.inner_text():
            break
        page.wait_for_timeout(100)
        page.reload()
    assert "Completed" in row.inner_text()
    assert "bell" in row.inner_text()
    row.get_by_role("link", name="notebook").click()
    page.get_by_role("heading", name="notebook").wait_for()
    assert "jobs:write" in page.get_by_role("definition").filter(has_text="jobs:read").inner_text()


def test_an_invited_member_sees_the_keys_and_manages_only_their_own(
    browser: Any, console_server: str
) -> None:
    base = console_server
    owner_context = browser.new_context(base_url=base)
    owner = owner_context.new_page()
    owner_watch = PageWatch(owner)
    sign_up(owner, base, email="owner@example.com", password=PASSWORD, organization="Org")
    create_key(owner, "owner key")
    owner.get_by_role("link", name="Done").click()

    owner.get_by_role("link", name="Members").click()
    owner.get_by_label("E-mail address").fill("member@example.com")
    owner.get_by_label("Role", exact=True).select_option("member")
    owner.get_by_role("button", name="Create invitation").click()
    link = owner.get_by_role("textbox", name="Invitation link").input_value()
    assert "/console/join?token=" in link
    owner_watch.assert_clean()

    member_context = browser.new_context(base_url=base)
    member = member_context.new_page()
    member_watch = PageWatch(member)
    member.goto(link)
    member.get_by_role("heading", name="Join Org").wait_for()
    member.get_by_label("Choose a password").fill(PASSWORD)
    member.get_by_label("Repeat the password").fill(PASSWORD)
    member.get_by_role("button", name="Create account and join").click()
    member.get_by_role("heading", name="API Keys").wait_for()

    nav = member.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Members").count() == 0
    assert nav.get_by_role("link", name="Audit log").count() == 0
    owner_row = member.get_by_role("row").filter(has_text="owner key")
    assert owner_row.get_by_role("button", name="Revoke").count() == 0

    create_key(member, "member key")
    member.get_by_role("link", name="Done").click()
    member_row = member.get_by_role("row").filter(has_text="member key")
    assert member_row.get_by_role("button", name="Revoke").count() == 1
    assert "by member@example.com" in member_row.inner_text()

    member_row.get_by_role("link", name="member key").click()
    member.get_by_role("button", name="Roll").click()
    member.get_by_label("Old key stops working").select_option("3600")
    member.get_by_role("button", name="Roll key").click()
    rolled = member.get_by_label("API key", exact=True).input_value()
    assert whoami(base, rolled).status_code == 200
    member.get_by_role("link", name="Done").click()
    assert member.get_by_role("row").filter(has_text="member key").count() == 2
    member_watch.assert_clean()

    refused = member.goto(f"{base}/console/members")
    assert refused is not None
    assert refused.status == 403

    owner.goto(f"{base}/console/members")
    assert "member@example.com" in owner.get_by_role("table").first.inner_text()
    member_context.close()
    owner_context.close()
