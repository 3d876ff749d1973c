from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from keyplane.service.services import Services

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """One browser: its own cookie jar and client IP, talking to the console."""

    def __init__(self, app: FastAPI, ip: str = "203.0.113.7", *, https: bool = False) -> None:
        scheme = "https" if https else "http"
        self.client = TestClient(
            app, base_url=f"{scheme}://console.test", client=(ip, 50000), follow_redirects=False
        )

    @property
    def session_token(self) -> str:
        token = self.client.cookies.get("keyplane_session", path="/console")
        assert token
        return token

    def set_session(self, token: str | None) -> None:
        """Put ``token`` in the jar as the session cookie (``None`` removes it)."""
        for cookie in list(self.client.cookies.jar):
            if cookie.name == "keyplane_session":
                self.client.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)
        if token is not None:
            self.client.cookies.set(
                "keyplane_session", token, domain="console.test", path="/console"
            )

    def get(self, path: str, **kwargs: object) -> Response:
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]

    def csrf(self, path: str = "/console/keys") -> str:
        page = self.client.get(path, follow_redirects=True)
        found = _CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    def post(
        self, path: str, data: dict[str, object], *, token_from: str | None = None, **kwargs: object
    ) -> Response:
        if "csrf_token" not in data:
            data = {**data, "csrf_token": self.csrf(token_from or "/console/keys")}
        return self.client.post(path, data=data, **kwargs)  # type: ignore[arg-type]

    def sign_up(self, email: str = "owner@acme.test", organization: str = "Acme") -> Response:
        response = self.post(
            "/console/signup",
            {"email": email, "password": PASSWORD, "organization": organization},
            token_from="/console/signup",
        )
        assert response.status_code == 303, response.text
        return response

    def sign_in(self, email: str, password: str = PASSWORD) -> Response:
        return self.post(
            "/console/signin", {"email": email, "password": password}, token_from="/console/signin"
        )

    def project_id(self) -> str:
        found = re.search(r'name="project" value="(prj_\w+)"', self.get("/console/keys").text)
        assert found
        return found.group(1)

    def create_key(self, name: str = "laptop", **fields: object) -> tuple[str, str]:
        """Create a key; return its id and value."""
        response = self.post(
            "/console/keys", {"project": self.project_id(), "name": name, **fields}
        )
        assert response.status_code == 201, response.text
        value = re.search(r'value="(kp_\w+)"', response.text)
        key_id = re.search(r"/console/keys/(key_\w+)", response.text)
        assert value
        assert key_id
        return key_id.group(1), value.group(1)

    def invite(self, email: str, role: str = "member") -> str:
        response = self.post("/console/members/invite", {"email": email, "role": role})
        assert response.status_code == 201, response.text
        link = re.search(r'value="https?://[^/]+(/console/join\?token=[^"]+)"', response.text)
        assert link
        return link.group(1)

    def join(self, link: str, password: str = PASSWORD) -> Response:
        """Accept as a new account (signed out): choose ``password`` for the address."""
        token = link.split("token=", 1)[1]
        return self.post(
            "/console/join",
            {"token": token, "password": password, "confirm_password": password},
            token_from="/console/signin",
        )

    def join_signed_in(self, link: str) -> Response:
        """Accept as the signed-in user (an existing account joins this way)."""
        token = link.split("token=", 1)[1]
        return self.post("/console/join", {"token": token}, token_from=link)


@pytest.fixture
def browser(client: TestClient, app: FastAPI) -> Browser:
    return Browser(app)


@pytest.fixture
def make_browser(client: TestClient, app: FastAPI) -> Callable[..., Browser]:
    """Another browser (own cookies, own IP) on the same server."""

    def make(ip: str = "198.51.100.20", *, https: bool = False) -> Browser:
        return Browser(app, ip, https=https)

    return make


@pytest.fixture
def owner(browser: Browser) -> Browser:
    browser.sign_up()
    return browser


@pytest.fixture
def open_signup(services: Services) -> None:
    from keyplane.service.accounts.members import SignupPolicy

    services.members.policy = SignupPolicy.OPEN
