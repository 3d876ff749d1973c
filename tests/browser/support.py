"""Driving Debian's Chromium with Playwright against a real ``keyplane serve``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_ENV

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_or_skip() -> Path:
    """Debian's Chromium; skip without it, but fail in CI (``KEYPLANE_TEST_REQUIRE_SERVICES=1``)."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"browser tests need {CHROMIUM} (apt-get install -y chromium; .ci/run does it)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1")
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageWatch:
    """Collects every 4xx/5xx answer and console error a page sees."""

    def __init__(self, page: Any) -> None:
        self.failures: list[str] = []
        page.on(
            "response",
            lambda response: (
                self.failures.append(f"{response.status} {response.url}")
                if response.status >= 400
                else None
            ),
        )
        page.on(
            "console",
            lambda message: (
                self.failures.append(f"console {message.type}: {message.text}")
                if message.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda error: self.failures.append(f"page error: {error}"))

    def assert_clean(self) -> None:
        assert self.failures == []


def sign_up(page: Any, base: str, *, email: str, password: str, organization: str) -> None:
    """A first visit to a fresh server: sign-in page, then "Create an account"."""
    page.goto(f"{base}/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Organization name").fill(organization)
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="API Keys").wait_for()


def create_key(page: Any, name: str) -> str:
    """Create a key through the dialog; return the value the reveal panel shows."""
    page.get_by_role("button", name="Create key").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create key").click()
    field = page.get_by_label("API key", exact=True)
    field.wait_for()
    value: str = field.input_value()
    return value
