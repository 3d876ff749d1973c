"""The generated authorization matrix (tests/security/authorization.py) against the app."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.routing import BaseRoute, Mount

from keyplane.service.abuse import FailedKeyLimiter
from keyplane.service.records import Actor, Caller, Role
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey
from tests.console.conftest import PASSWORD, Browser
from tests.security.authorization import (
    API_ENDPOINTS,
    API_SUBJECTS,
    CONSOLE_ACTIONS,
    CONSOLE_EXEMPT,
    CONSOLE_SUBJECTS,
    DOC,
    ApiEndpoint,
    ConsoleAction,
    documented_tables,
    render_tables,
)
from tests.support import Tenant

_names = itertools.count()


def _operator(organization_id: str) -> Caller:
    return Caller(organization_id, ("*",), Actor.operator())


# -- every route has an entry ------------------------------------------------------


def _routes(routes: Sequence[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route, included routers flattened, mounts followed."""
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, Mount):
            found |= _routes(route.routes, prefix + route.path)
        elif isinstance(route, APIRoute):
            found |= {(method, prefix + context.path) for method in context.methods or ()}
    return {(method, path) for method, path in found if method != "HEAD"}


def _api_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {(m, p) for m, p in _routes(app.routes) if p.startswith("/api/v1")}


def _console_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {(m, p) for m, p in _routes(app.routes) if p.startswith("/console")}


def test_every_api_route_has_a_matrix_entry(app: FastAPI) -> None:
    listed = {(e.method, e.path) for e in API_ENDPOINTS}
    assert _api_routes(app) - listed == set(), "add these to tests/security/authorization.py"
    assert listed - _api_routes(app) == set(), "these matrix entries match no route"


def test_every_console_route_has_a_matrix_entry_or_an_exemption(app: FastAPI) -> None:
    listed = {(a.method, a.path) for a in CONSOLE_ACTIONS} | set(CONSOLE_EXEMPT)
    assert _console_routes(app) - listed == set(), "add these to tests/security/authorization.py"
    assert listed - _console_routes(app) == set(), "these matrix entries match no route"


def test_the_table_in_docs_security_md_is_current() -> None:
    documented = documented_tables(DOC.read_text(encoding="utf-8"))
    assert documented == render_tables(), (
        "docs/security.md is stale: run `.venv/bin/python -m tests.security.authorization`"
    )


# -- the REST API ------------------------------------------------------------------


@dataclass
class ApiWorld:
    services: Services
    tenant: Tenant
    other: Tenant
    keys: dict[str, str]

    def headers(self, subject: str) -> dict[str, str]:
        if subject == "none":
            return {}
        key = self.other.key if subject == "other-org" else self.keys[subject]
        return {"Authorization": f"Bearer {key}"}

    def fresh_key(self) -> tuple[str, str]:
        created = self.services.keys.create(
            _operator(self.tenant.organization_id), self.tenant.project_id, name="target"
        )
        return created.record.id, created.secret.reveal()


@pytest.fixture
def api_world(services: Services, tenant: Tenant, other_tenant: Tenant) -> ApiWorld:
    # Many failed keys from one address are part of the matrix, not brute force.
    services.failed_keys = FailedKeyLimiter("1000000 per minute")
    caller = _operator(tenant.organization_id)

    def key(scope_list: list[str], **options: Any) -> str:
        created = services.keys.create(
            caller, tenant.project_id, name=f"subject {next(_names)}", scopes=scope_list, **options
        )
        return created.secret.reveal()

    keys = {"*": tenant.key}
    for subject in API_SUBJECTS:
        if subject.startswith("scope:"):
            keys[subject] = key([subject.removeprefix("scope:")])
    keys["disabled"] = key(["*"], enabled=False)
    revoked = services.keys.create(caller, tenant.project_id, name="revoked", scopes=["*"])
    services.keys.revoke(caller, revoked.record.id)
    keys["revoked"] = revoked.secret.reveal()
    expired = services.keys.create(
        caller,
        tenant.project_id,
        name="expired",
        scopes=["*"],
        expires_at=services.clock() + timedelta(hours=1),
    )
    with services.database.write() as session:  # an expiry in the past, as time would make it
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == expired.record.id)
            .values(expires_at=services.clock() - timedelta(seconds=1))
        )
    services.cache.clear()
    keys["expired"] = expired.secret.reveal()
    return ApiWorld(services, tenant, other_tenant, keys)


def _api_request(world: ApiWorld, endpoint: ApiEndpoint) -> tuple[str, dict[str, Any] | None]:
    """The concrete path and body for one call, on fresh targets (calls may change them)."""
    key_id, key_value = world.fresh_key()
    path = endpoint.path.format(project_id=world.tenant.project_id, key_id=key_id)
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/v1/verify"): {"key": key_value},
        ("POST", "/api/v1/projects"): {"name": f"project {next(_names)}"},
        ("POST", "/api/v1/projects/{project_id}/keys"): {"name": "made by the matrix"},
        ("PATCH", "/api/v1/keys/{key_id}"): {"name": "renamed"},
        ("POST", "/api/v1/leaks/github"): [],  # type: ignore[dict-item]
    }
    return path, bodies.get((endpoint.method, endpoint.path))


@pytest.mark.parametrize("endpoint", API_ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_api_answers_every_subject_as_the_matrix_says(
    client: TestClient, api_world: ApiWorld, endpoint: ApiEndpoint
) -> None:
    got: dict[str, int] = {}
    for subject in API_SUBJECTS:
        path, body = _api_request(api_world, endpoint)
        response = client.request(
            endpoint.method, path, json=body, headers=api_world.headers(subject)
        )
        got[subject] = response.status_code
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
    expected = {subject: endpoint.expected(subject) for subject in API_SUBJECTS}
    assert got == expected


# -- the console -------------------------------------------------------------------


@dataclass
class ConsoleWorld:
    services: Services
    browsers: dict[str, Browser]
    organization_id: str
    project_id: str

    def targets(self) -> dict[str, str]:
        """Fresh objects of the organization: a key, a member, an invitation."""
        caller = _operator(self.organization_id)
        key = self.services.keys.create(caller, self.project_id, name=f"target {next(_names)}")
        email = f"target{next(_names)}@acme.test"
        joined = self.services.members.invite(caller, email, Role.MEMBER)
        session = self.services.members.accept(joined.token, PASSWORD)
        invitation = self.services.members.invite(caller, f"pending{next(_names)}@acme.test")
        return {
            "key_id": key.record.id,
            "user_id": session.record.user_id,
            "invitation_id": invitation.record.id,
        }


@pytest.fixture
def console_world(
    owner: Browser,
    make_browser: Callable[..., Browser],
    services: Services,
    open_signup: None,
) -> ConsoleWorld:
    if not services.settings.is_sqlite:
        pytest.skip("roles are decided in the service layer: the console matrix runs on SQLite")
    browsers = {"owner": owner}
    for index, role in enumerate(("admin", "member")):
        link = owner.invite(f"{role}@acme.test", role)
        browser = make_browser(f"198.51.100.{60 + index}")
        assert browser.join(link).status_code == 303
        browsers[role] = browser
    stranger = make_browser("198.51.100.70")
    stranger.sign_up("owner@globex.test", "Globex")
    browsers["other-org"] = stranger
    browsers["anonymous"] = make_browser("198.51.100.71")
    organization = services.accounts.operator_caller("Acme").organization_id
    return ConsoleWorld(services, browsers, organization, owner.project_id())


_FORMS: dict[tuple[str, str], dict[str, object]] = {
    ("POST", "/console/keys"): {"name": "made in the matrix"},
    ("POST", "/console/keys/{key_id}/rename"): {"name": "renamed"},
    ("POST", "/console/keys/{key_id}/roll"): {"grace_seconds": "0"},
    ("POST", "/console/members/{user_id}/role"): {"role": "admin"},
}


@pytest.mark.parametrize("action", CONSOLE_ACTIONS, ids=lambda a: f"{a.method} {a.path}")
def test_console_answers_every_person_as_the_matrix_says(
    console_world: ConsoleWorld, action: ConsoleAction
) -> None:
    got: dict[str, int] = {}
    for subject in CONSOLE_SUBJECTS:
        browser = console_world.browsers[subject]
        path = action.path.format(**console_world.targets())
        if action.method == "GET":
            response = browser.get(path)
        else:
            form: dict[str, object] = dict(_FORMS.get((action.method, action.path), {}))
            if action.path == "/console/keys":
                form["project"] = console_world.project_id
            if action.path == "/console/projects":
                form["name"] = f"project {next(_names)}"
            if action.path == "/console/members/invite":
                form["email"] = f"invited{next(_names)}@example.test"
            if subject == "anonymous":
                form["csrf_token"] = "none"
            response = browser.post(path, form)
        got[subject] = response.status_code
    expected = {subject: action.expected(subject) for subject in CONSOLE_SUBJECTS}
    assert got == expected
