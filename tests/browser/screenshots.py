"""Regenerate the console screenshots in docs/screenshots/.

    .venv/bin/python -m tests.browser.screenshots

Starts a fresh ``keyplane serve`` in a temporary directory, signs up, makes a
few keys (one used, one revoked) and photographs the API Keys page, the
one-time reveal panel and the revoke dialog with Debian's Chromium; then
makes a key with the job scopes, submits a few jobs to ``/v0.4`` and
photographs the Jobs page.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.browser.support import chromium, create_key, sign_up
from tests.processes import server

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
            page.keyboard.press("Escape")
            photograph_jobs(page, base)
            context.close()
    for name in ("keys-page.png", "reveal-panel.png", "revoke-dialog.png", "jobs-page.png"):
        print(OUT / name)


def photograph_jobs(page: Any, base: str) -> None:
    page.get_by_role("button", name="Create key").click()
    page.get_by_label("Name", exact=True).fill("qiskit-notebook")
    page.get_by_label("jobs:read", exact=True).check()
    page.get_by_label("jobs:write", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    headers = {"Authorization": f"apiKey {page.get_by_label('API key', exact=True).input_value()}"}
    page.get_by_role("link", name="Done").click()
    for name, qubits, shots in (("bell", 2, 1000), ("ghz-5", 5, 4000), ("qft-12", 12, 500)):
        circuit = [{"gate": "h", "targets": [0]}] + [
            {"gate": "cnot", "control": 0, "target": target} for target in range(1, qubits)
        ]
        body = {
            "type": "ionq.circuit.v1",
            "name": name,
            "shots": shots,
            "input": {"qubits": qubits, "circuit": circuit},
        }
        httpx.post(f"{base}/v0.4/jobs", json=body, headers=headers).raise_for_status()
    time.sleep(1)  # the server's workers finish the jobs
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    page.screenshot(path=OUT / "jobs-page.png")


if __name__ == "__main__":
    main()
