"""A real OpenID Connect provider for the SSO tests: oidc-provider-mock in its own
process on a free loopback port, driven over HTTP the way a browser would.

The provider's authorization page is a form where one types the subject; the
claims of a subject (``email``, ``email_verified``) are set beforehand with
``PUT /users/{sub}``. Its issuer is its base URL (``http://127.0.0.1:PORT``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.processes import free_port


@dataclass(frozen=True)
class Provider:
    issuer: str

    def set_user(self, sub: str, email: str, *, verified: bool | None = True) -> None:
        claims: dict[str, object] = {"email": email}
        if verified is not None:
            claims["email_verified"] = verified
        response = httpx.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        assert response.status_code == 204, response.text

    def authorize(self, authorization_url: str, sub: str) -> dict[str, str]:
        """Sign ``sub`` in on the provider's page; the callback's query parameters."""
        assert authorization_url.startswith(self.issuer + "/"), authorization_url
        page = httpx.get(authorization_url, timeout=10)
        assert page.status_code == 200, page.text
        assert 'name="sub"' in page.text
        answer = httpx.post(authorization_url, data={"sub": sub}, timeout=10)
        return self._callback_query(answer)

    def deny(self, authorization_url: str) -> dict[str, str]:
        answer = httpx.post(authorization_url, data={"action": "deny"}, timeout=10)
        return self._callback_query(answer)

    @staticmethod
    def _callback_query(answer: httpx.Response) -> dict[str, str]:
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert urlsplit(location).path == "/console/sso/callback", location
        return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


@contextmanager
def oidc_provider(log: Path) -> Iterator[Provider]:
    """Run oidc-provider-mock until the block ends; ready once discovery answers."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NO_COLOR": "1"}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    found = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1)
                    if found.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the OIDC provider did not start:\n{log.read_text()}")
                time.sleep(0.1)
            yield Provider(issuer)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                process.kill()
                process.wait()
