"""The generated authorization matrix (tests/security/authorization.py) against the app."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.routing import BaseRoute, Mount

from keyplane.config import Settings
from keyplane.service.limits.failed_keys import FailedKeyLimiter
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey
from tests.security.authorization import (
    API_ENDPOINTS,
    API_SUBJECTS,
    CONSOLE_ACTIONS,
    CONSOLE_EXEMPT,
    DOC,
    ApiEndpoint,
    documented_tables,
    render_tables,
)
from tests.support import Tenant

_names = itertools.count()


def _operator(organization_id: str) -> Caller:
    return Caller(organization_id, ("*",), Actor.operator())


#: Webhook endpoints of the matrix point here (nothing listens: deliveries are not sent).
HOOK_URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        outbound_allow_networks=(ipaddress.IPv4Network("127.0.0.1/32"),),
        webhook_workers=0,
    )


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

    def fresh_webhook(self) -> tuple[str, str]:
        """An endpoint of the organization and a delivery of it."""
        caller = _operator(self.tenant.organization_id)
        created = self.services.webhooks.create_endpoint(caller, url=HOOK_URL)
        delivery = self.services.webhooks.send_test(caller, created.endpoint.id)
        return created.endpoint.id, delivery.id


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
    ids = {}
    if "{endpoint_id}" in endpoint.path or "{delivery_id}" in endpoint.path:
        ids["endpoint_id"], ids["delivery_id"] = world.fresh_webhook()
    path = endpoint.path.format(project_id=world.tenant.project_id, key_id=key_id, **ids)
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/v1/verify"): {"key": key_value},
        ("POST", "/api/v1/projects"): {"name": f"project {next(_names)}"},
        ("POST", "/api/v1/projects/{project_id}/keys"): {"name": "made by the matrix"},
        ("PATCH", "/api/v1/keys/{key_id}"): {"name": "renamed"},
        ("POST", "/api/v1/webhooks"): {"url": HOOK_URL},
        ("PATCH", "/api/v1/webhooks/{endpoint_id}"): {"description": "changed"},
        ("POST", "/api/v1/leaks/github"): [],  # type: ignore[dict-item]
        ("PATCH", "/api/v1/policies"): {"stale_days": 365},
        ("POST", "/api/v1/policies/dry-run"): {"stale_days": 90},
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
