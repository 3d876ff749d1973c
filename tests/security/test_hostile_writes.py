"""Every write endpoint, fed hostile JSON: never a 5xx, and a refusal commits nothing.

The endpoints come from the apps themselves (the API's OpenAPI document, the
IonQ sub-app's), so a new write route is covered without editing this file.
Each request body is a valid one with one field replaced by a hostile value
(deep nesting, huge numbers, NaN, lone surrogates, NUL, invalid UTF-8, wrong
types, strings near the limits, duplicate keys, nulls), plus whole bodies that
are not objects at all. For every answer that is not a 2xx, every table's
rows are compared before and after: the database must be unchanged. At the
end, everything that was stored must still be listable and readable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select

from keyplane.app import create_app
from keyplane.core.errors import InvalidInput
from keyplane.ionq.jobs.records import JobOwner
from keyplane.ionq.web.app import create_ionq_app
from keyplane.service.keys.lifecycle import KeyChanges
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey, Base, Project
from tests.conftest import served_app
from tests.console.conftest import Browser
from tests.support import Tenant

WRITE_METHODS: Final = ("post", "put", "patch", "delete")
JOB_INPUT: Final = {"qubits": 1, "circuit": [{"gate": "h", "target": 0}]}


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


#: JSON texts put in place of one field's value.
HOSTILE_VALUES: Final[dict[str, bytes]] = {
    "deep-33": _nested(33),
    "deep-300": _nested(300),
    "nan": b"NaN",
    "infinity": b"-Infinity",
    "huge-float": b"1e999",
    "huge-int": b"9" * 5000,
    "big-int": b"9" * 4000,
    "lone-surrogate": b'"\\ud800"',
    "surrogate-key": b'{"\\udfff": 1}',
    "nul": b'"a\\u0000b"',
    "nul-member": b'{"a": "\\u0000"}',
    "nan-member": b'{"a": [NaN]}',
    "invalid-utf8": b'"\xff\xfe"',
    "null": b"null",
    "array": b'[1, {"a": null}, "x"]',
    "object": b'{"name": "x", "scopes": []}',
    "bool": b"true",
    "negative": b"-1",
    "fraction": b"0.5",
    "control-chars": b'"\\u202e\\u0007x"',
    "long-string": b'"' + b"y" * 20_000 + b'"',
    "near-body-limit": b'"' + b"x" * (1024 * 1024 - 300) + b'"',
    "near-metadata-limit": b'{"a": "' + b"m" * 16_350 + b'"}',
}

#: Whole bodies.
HOSTILE_BODIES: Final[dict[str, bytes]] = {
    "empty": b"",
    "null": b"null",
    "array": b"[]",
    "truncated": b'{"name": "x"',
    "deep-990": b"[" * 990 + b"]" * 990,
    "deep-unclosed": b"[" * 5000,
    "deep-in-string": b'{"name": "' + b"[" * 5000 + b'"}',
    "duplicate-keys": b'{"name": "a", "name": "\\ud800"}',
    "trailing-garbage": b'{"name": "x"} {"name": "y"}',
    # A job's input is stored whole: members the circuit check does not read.
    "job-input-nan": b'{"input": {"qubits": 1, "circuit": [{"gate": "h", "target": 0}], "x": NaN}}',
    "job-input-nul": b'{"input": {"qubits": 1, "circuit": [{"gate": "h", "target": 0}], '
    b'"x": "\\u0000"}}',
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with {placeholders}
    base: dict[str, Any]
    fields: tuple[str, ...]


def _api_endpoints(app: FastAPI, tenant: Tenant) -> list[Endpoint]:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method not in WRITE_METHODS:
                continue
            schema = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
            )
            fields = tuple(_properties(schema, schemas))
            found.append(Endpoint(method, path, _base_body(path, tenant), fields))
    return found


def _properties(schema: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    for option in schema.get("anyOf", []):
        if "$ref" in option:
            schema = option
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    return list(schema.get("properties", {}))


def _ionq_endpoints() -> list[Endpoint]:
    document = create_ionq_app(lambda: None).openapi()
    job_fields = ("name", "shots", "input", "metadata", "noise", "settings", "type", "backend")
    found = []
    for path, operations in document["paths"].items():
        for method in operations:
            if method in WRITE_METHODS:
                fields = job_fields if path == "/jobs" else ()
                found.append(Endpoint(method, f"/v0.4{path}", {"input": JOB_INPUT}, fields))
    return found


def _base_body(path: str, tenant: Tenant) -> dict[str, Any]:
    if path.endswith("/verify"):
        return {"key": tenant.key}
    if path.endswith("/roll"):
        return {}
    if path.endswith("/leaks/github"):
        return {"token": "x", "type": "keyplane_api_key", "url": "https://x", "source": "content"}
    return {"name": "hostile"}


def _body(base: dict[str, Any], field: str, value: bytes, *, listed: bool) -> bytes:
    members = [
        json.dumps(name).encode() + b":" + json.dumps(v).encode()
        for name, v in base.items()
        if name != field
    ]
    members.append(json.dumps(field).encode() + b":" + value)
    body = b"{" + b",".join(members) + b"}"
    return b"[" + body + b"]" if listed else body


def _snapshot(services: Services) -> dict[str, list[str]]:
    with services.database.read() as session:
        return {
            table.name: sorted(repr(tuple(row)) for row in session.execute(select(table)))
            for table in Base.metadata.sorted_tables
        }


class Target:
    """Fresh objects for routes that take one (a key is rolled or revoked by the request)."""

    def __init__(self, client: TestClient, tenant: Tenant) -> None:
        self.client = client
        self.tenant = tenant

    def path(self, template: str) -> str:
        if "{key_id}" in template:
            created = self.client.post(
                f"/api/v1/projects/{self.tenant.project_id}/keys",
                json={"name": "victim", "metadata": {"a": [1]}},
                headers=self.tenant.headers,
            )
            template = template.replace("{key_id}", created.json()["id"])
        if "{job_id}" in template:
            job = self.client.post(
                "/v0.4/jobs", json={"input": JOB_INPUT}, headers=self.tenant.headers
            )
            template = template.replace("{job_id}", job.json()["id"])
        return template.replace("{project_id}", self.tenant.project_id)


def _cases(endpoint: Endpoint) -> Iterator[tuple[str, bytes]]:
    listed = endpoint.path.endswith("/leaks/github")
    for field in endpoint.fields:
        for name, value in HOSTILE_VALUES.items():
            yield f"{field}={name}", _body(endpoint.base, field, value, listed=listed)
    yield from HOSTILE_BODIES.items()


@pytest.fixture
def hostile_client(services: Services) -> Iterator[TestClient]:
    """What ``keyplane serve`` runs: the one assembly, built by the factory it names."""
    served = served_app()
    served.state.services = services
    with TestClient(served, client=("203.0.113.9", 50000), raise_server_exceptions=False) as client:
        yield client


def test_if_any_write_endpoint_gets_hostile_json_then_no_5xx_and_a_refusal_commits_nothing(
    hostile_client: TestClient, services: Services, tenant: Tenant
) -> None:
    endpoints = _api_endpoints(create_app(), tenant) + _ionq_endpoints()
    assert {(e.method, e.path) for e in endpoints} >= {
        ("post", "/api/v1/projects/{project_id}/keys"),
        ("patch", "/api/v1/keys/{key_id}"),
        ("post", "/api/v1/keys/{key_id}/roll"),
        ("post", "/v0.4/jobs"),
    }
    target = Target(hostile_client, tenant)
    failures = []
    for endpoint in endpoints:
        for case, body in _cases(endpoint):
            path = target.path(endpoint.path)
            before = _snapshot(services)
            response = hostile_client.request(
                endpoint.method.upper(),
                path,
                content=body,
                headers={**tenant.headers, "Content-Type": "application/json"},
            )
            where = f"{endpoint.method.upper()} {endpoint.path} [{case}]"
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code}")
            elif not 200 <= response.status_code < 300 and _snapshot(services) != before:
                failures.append(f"{where}: {response.status_code} but the database changed")
    assert not failures, "\n".join(failures)
    # Whatever was accepted can be shown: listings and reads answer.
    keys = hostile_client.get(
        f"/api/v1/projects/{tenant.project_id}/keys?limit=200", headers=tenant.headers
    )
    assert keys.status_code == 200
    for key in keys.json()["items"]:
        assert hostile_client.get(f"/api/v1/keys/{key['id']}", headers=tenant.headers).is_success
    jobs = hostile_client.get("/v0.4/jobs?limit=100", headers=tenant.headers)
    assert jobs.status_code == 200
    for job in jobs.json()["jobs"]:
        assert hostile_client.get(f"/v0.4/jobs/{job['id']}", headers=tenant.headers).is_success


def test_if_stored_metadata_is_deeper_than_renderable_then_listings_reads_and_rolls_still_answer(
    hostile_client: TestClient, services: Services, tenant: Tenant
) -> None:
    # Metadata stored before the depth limit existed (written past the service's checks).
    created = hostile_client.post(
        f"/api/v1/projects/{tenant.project_id}/keys", json={"name": "old"}, headers=tenant.headers
    ).json()
    deep: dict[str, Any] = {}
    for _ in range(300):
        deep = {"a": deep}
    with services.database.write() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.id == created["id"])).one()
        row.meta = deep
    services.cache.clear()

    listed = hostile_client.get(
        f"/api/v1/projects/{tenant.project_id}/keys", headers=tenant.headers
    )
    assert listed.status_code == 200
    shown = hostile_client.get(f"/api/v1/keys/{created['id']}", headers=tenant.headers)
    assert shown.status_code == 200
    assert "keyplane_unrenderable" in shown.json()["metadata"]
    verified = hostile_client.post(
        "/api/v1/verify", json={"key": created["key"]}, headers=tenant.headers
    )
    assert verified.status_code == 200
    assert verified.json()["valid"] is True
    rolled = hostile_client.post(f"/api/v1/keys/{created['id']}/roll", headers=tenant.headers)
    assert rolled.status_code == 201
    # The roll's new value was handed out, and it works.
    answer = hostile_client.post(
        "/api/v1/verify", json={"key": rolled.json()["key"]}, headers=tenant.headers
    )
    assert answer.json()["valid"] is True
    # Replacing the metadata fixes it.
    fixed = hostile_client.patch(
        f"/api/v1/keys/{created['id']}", json={"metadata": {"ok": 1}}, headers=tenant.headers
    )
    assert fixed.status_code == 200
    assert fixed.json()["metadata"] == {"ok": 1}


def _deep_value(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(_deep_value(33), id="one-too-deep"),
        pytest.param(_deep_value(5000), id="deeper-than-recursion"),
        pytest.param({"a": "\ud800"}, id="lone-surrogate"),
        pytest.param({"\udc00": 1}, id="surrogate-key"),
        pytest.param({"a": "\x00"}, id="nul"),
        pytest.param({"a": [float("nan")]}, id="nan"),
        pytest.param({"a": {1, 2}}, id="not-json"),
        pytest.param({1: "a"}, id="non-string-key"),
    ],
)
def test_if_an_in_process_caller_stores_json_that_cannot_be_rendered_then_it_is_refused(
    services: Services, tenant: Tenant, metadata: dict[Any, Any]
) -> None:
    caller = Caller(tenant.organization_id, ("*",), Actor("key:test"))
    before = _snapshot(services)
    with pytest.raises(InvalidInput):
        services.keys.create(caller, tenant.project_id, name="sdk", metadata=metadata)
    with pytest.raises(InvalidInput):
        services.keys.update(caller, tenant.key_id, KeyChanges(metadata=metadata))
    owner = JobOwner(tenant.organization_id, tenant.project_id, tenant.key_id)
    with pytest.raises(InvalidInput):
        services.jobs.submit(owner, {"input": {**JOB_INPUT, "extra": metadata}})
    with pytest.raises(InvalidInput):
        services.jobs.submit(owner, {"input": JOB_INPUT, "settings": metadata})
    assert _snapshot(services) == before


def test_if_metadata_is_exactly_at_the_depth_limit_then_it_is_stored_and_shown(
    hostile_client: TestClient, tenant: Tenant
) -> None:
    # The body nests one level more than the metadata it carries.
    created = hostile_client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": "at-limit", "metadata": _deep_value(31)},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["metadata"] == _deep_value(31)


#: Raw ``application/x-www-form-urlencoded`` values (already percent-encoded).
HOSTILE_FORM_VALUES: Final[dict[str, str]] = {
    "nul": "a%00b",
    "lone-surrogate-utf8": "%ED%A0%80",
    "invalid-utf8": "%FF%FE",
    "bidi-control": "%E2%80%AEx",
    "brackets": "%5B" * 5000,
    "near-body-limit": "x" * (76_000),  # for each of the thirteen fields
    "empty": "",
}
FORM_FIELDS: Final = (
    "name",
    "email",
    "password",
    "organization",
    "scopes",
    "expires_in",
    "role",
    "project_id",
    "project",
    "expires",
    "other_scopes",
    "current_password",
    "new_password",
)


def test_if_any_console_form_gets_hostile_values_then_no_5xx_and_a_refusal_commits_nothing(
    owner: Browser, services: Services
) -> None:
    console = next(
        route for route in create_app().routes if getattr(route, "path", "") == "/console"
    )
    forms = sorted(
        (context.path for context in iter_route_contexts(console.app.routes)  # type: ignore[attr-defined]
         if context.methods and "POST" in context.methods),
        key=lambda path: path == "/signout",  # signing out last
    )  # fmt: skip
    assert "/keys" in forms
    project = owner.project_id()
    with services.database.read() as session:
        organization = session.scalars(
            select(Project.organization_id).where(Project.id == project)
        ).one()
    caller = Caller(organization, ("*",), Actor("key:test"))
    members = re.search(r"(usr_[A-Za-z0-9]+)", owner.client.get("/console/members").text)
    user_id = members.group(1) if members else "usr_unknown"
    failures = []
    for form in forms:
        for case, value in HOSTILE_FORM_VALUES.items():
            path = "/console" + form.replace("{user_id}", user_id).replace(
                "{invitation_id}", "inv_unknown"
            )
            if "{key_id}" in path:  # a fresh key each time: the form may revoke or roll it
                victim = services.keys.create(caller, project, name="victim").record.id
                path = path.replace("{key_id}", victim)
            token = owner.csrf("/console/keys")
            body = "&".join(f"{field}={value}" for field in FORM_FIELDS) + f"&csrf_token={token}"
            before = _snapshot(services)
            try:
                response = owner.client.post(
                    path,
                    content=body.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            except Exception as error:  # the TestClient re-raises a server error
                failures.append(f"POST {form} [{case}]: {type(error).__name__}")
                continue
            if response.status_code >= 500:
                failures.append(f"POST {form} [{case}]: {response.status_code}")
            elif response.status_code >= 400 and _snapshot(services) != before:
                failures.append(f"POST {form} [{case}]: {response.status_code}, database changed")
    assert not failures, "\n".join(failures)
