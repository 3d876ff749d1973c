"""Regenerate the console screenshots in docs/screenshots/.

    .venv/bin/python -m tests.browser.screenshots

Starts a fresh ``keyplane serve`` in a temporary directory, signs up, makes a
few keys (one used, one revoked) and photographs the API Keys page, the
one-time reveal panel and the revoke dialog with Debian's Chromium.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx

from tests.browser.support import chromium, create_key, sign_up
from tests.cli.test_serve import server

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 760}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["KEYPLANE_USAGE_FLUSH_INTERVAL"] = "0.1"
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        work = Path(tmp)
        with server(work / "data", work / "server.log") as base:
            context = browser.new_context(base_url=base, viewport=VIEWPORT, device_scale_factor=1)
            page = context.new_page()
            sign_up(
                page, base, email="ada@example.com", password="a long password", organization="Acme"
            )
            keys = {}
            for name in ("ci-deploy", "staging-worker", "notebook"):
                keys[name] = create_key(page, name)
                page.get_by_role("link", name="Done").click()
            for name in ("ci-deploy", "notebook"):
                httpx.get(
                    f"{base}/api/v1/whoami",
                    headers={"Authorization": f"Bearer {keys[name]}", "User-Agent": "my-app/1.0"},
                )
            create_key(page, "laptop")
            page.screenshot(path=OUT / "reveal-panel.png")
            page.get_by_role("link", name="Done").click()
            page.reload()
            page.screenshot(path=OUT / "keys-page.png")
            page.get_by_role("row").filter(has_text="staging-worker").get_by_role(
                "button", name="Revoke"
            ).click()
            page.get_by_role("dialog").wait_for()
            page.screenshot(path=OUT / "revoke-dialog.png")
            context.close()
    for name in ("keys-page.png", "reveal-panel.png", "revoke-dialog.png"):
        print(OUT / name)


if __name__ == "__main__":
    main()
