"""Webhooks in Chromium against a real ``keyplane serve``: an owner adds an endpoint
pointing at the test's receiver (which checks every signature with
``standardwebhooks``), sees the secret once, revokes a key, sees the delivery in
the log, replays it and sees the second delivery arrive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import PageWatch, create_key, sign_up
from tests.processes import server
from tests.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def webhook_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("KEYPLANE_SIGNUP", raising=False)
    with server(
        tmp_path / "data", tmp_path / "server.log", outbound_allow_networks="127.0.0.1/32"
    ) as base:
        yield base


def reload_until(page: Any, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in page.content():
        assert time.monotonic() < deadline, f"{text!r} never appeared"
        time.sleep(0.3)
        page.reload()


def test_add_an_endpoint_see_a_revocation_delivered_and_replay_it(
    browser: Any, webhook_server: str, receiver: Receiver
) -> None:
    base = webhook_server
    context = browser.new_context(base_url=base)
    page = context.new_page()
    watch = PageWatch(page)
    sign_up(page, base, email="ada@analytical.test", password=PASSWORD, organization="Analytical")
    create_key(page, "laptop")
    page.get_by_role("link", name="Done").click()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
    page.get_by_role("heading", name="Webhooks", exact=True).wait_for()
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("Description").fill("billing")
    page.get_by_role("checkbox", name="key.revoked").check()
    page.get_by_role("button", name="Add endpoint").click()
    page.get_by_role("heading", name="Endpoint added").wait_for()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    receiver.secrets.append(secret)
    page.get_by_role("link", name="Done").click()
    page.get_by_role("heading", name="Delivery log").wait_for()
    assert secret not in page.content()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API Keys").click()
    page.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    page.get_by_text("Key revoked.").wait_for()

    (first,) = receiver.wait_for(1)
    assert first.verified_by == [0]
    assert first.payload["type"] == "key.revoked"

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
    page.get_by_role("link", name="billing").or_(
        page.get_by_role("link", name=receiver.url)
    ).first.click()
    reload_until(page, "delivered")
    row = page.get_by_role("row").filter(has_text="key.revoked")
    assert "204" in row.inner_text()
    row.get_by_role("link", name="Details").click()
    page.get_by_role("heading", name="Attempts").wait_for()
    page.get_by_role("button", name="Replay").click()
    page.get_by_text("Delivery replayed.").wait_for()

    second = receiver.wait_for(2)[1]
    assert second.verified_by == [0]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    reload_until(page, "replay 1")
    watch.assert_clean()
