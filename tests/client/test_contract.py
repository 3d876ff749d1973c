"""The SDK against the API's own OpenAPI document: nothing of ``/api/v1`` out of reach.

The document is the served app's (``app.openapi()``). For each operation of
``/api/v1`` the SDK must have an operation in ``keyplane.client.operations``
that sends that method to that path, with every query parameter and every
property of the request body (nested ones included) it takes; the SDK model
the operation answers with (its return type, ``Operation[Model]``) must have
every property of the response schema, nested models included. The SDK may
hold more than the API (``VerifyResult.retry_after``), never less.

The operations are called with the arguments in :data:`SAMPLES` (every one
given, so every field is sent): a new operation needs a row there, and a new
API field needs its argument.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from keyplane.app import KeyplaneApp
from keyplane.client import AsyncClient, Client, operations
from keyplane.client._http import API_PREFIX, Operation
from keyplane.client._resources import Audit, Events, Keys, Policies, Projects, Webhooks, call
from keyplane.client.models import Quota, RateLimit

#: Operations of /api/v1 the SDK leaves out on purpose, and why.
NOT_FOR_THE_SDK: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/leaks/github"): (
        "GitHub's secret scanning partner endpoint: GitHub calls it with a signed body, "
        "a key holder never does"
    ),
}

_WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

#: Each SDK operation with every argument it takes (so every field is sent).
SAMPLES: dict[str, dict[str, Any]] = {
    "whoami": {},
    "verify": {
        "key": "kp_not_a_real_key",
        "scopes": ["jobs:run"],
        "client_ip": "203.0.113.7",
        "user_agent": "agent/1",
    },
    "list_projects": {"limit": 10, "cursor": "c"},
    "get_project": {"project_id": "prj_sample"},
    "create_project": {"name": "Research"},
    "list_keys": {"project_id": "prj_sample", "status": "active", "limit": 10, "cursor": "c"},
    "get_key": {"key_id": "key_sample"},
    "create_key": {
        "project_id": "prj_sample",
        "name": "ci",
        "scopes": ["keys:read"],
        "expires_at": _WHEN,
        "expires_in": "30d",
        "ip_allowlist": ["127.0.0.0/8"],
        "metadata": {"team": "qa"},
        "enabled": True,
        "rate_limit": RateLimit(100, 60),
        "quota": Quota(1000, "day"),
        "canary": True,
    },
    "list_events": {"type": "key.revoked", "limit": 10, "cursor": "c"},
    "list_event_types": {},
    "key_callers": {"key_id": "key_sample", "days": 7},
    "update_key": {
        "key_id": "key_sample",
        "name": "ci-2",
        "scopes": ["keys:read"],
        "expires_at": _WHEN,
        "metadata": {"team": "qa"},
        "enabled": False,
        "ip_allowlist": ["127.0.0.0/8"],
        "rate_limit": RateLimit(100, 60),
        "quota": Quota(1000, "day"),
    },
    "revoke_key": {"key_id": "key_sample"},
    "key_usage": {"key_id": "key_sample", "interval": "hour", "since": _WHEN, "until": _WHEN},
    "roll_key": {"key_id": "key_sample", "grace_period": timedelta(hours=1)},
    "get_key_policies": {},
    "update_key_policies": {
        "max_lifetime_seconds": 7776000,
        "default_expiry_seconds": 2592000,
        "stale_days": 90,
        "stale_disable": True,
        "stale_revoke_days": 30,
    },
    "dry_run_key_policies": {
        "max_lifetime_seconds": 7776000,
        "default_expiry_seconds": 2592000,
        "stale_days": 90,
        "stale_disable": True,
        "stale_revoke_days": 30,
    },
    "list_webhooks": {"limit": 10, "cursor": "c"},
    "get_webhook": {"endpoint_id": "whe_sample"},
    "create_webhook": {
        "url": "https://example.com/hook",
        "description": "billing",
        "event_types": ["key.*"],
    },
    "update_webhook": {
        "endpoint_id": "whe_sample",
        "url": "https://example.com/hook",
        "description": "billing",
        "event_types": ["key.revoked"],
        "enabled": False,
    },
    "delete_webhook": {"endpoint_id": "whe_sample"},
    "rotate_webhook_secret": {"endpoint_id": "whe_sample", "overlap": timedelta(hours=1)},
    "test_webhook": {"endpoint_id": "whe_sample"},
    "list_webhook_deliveries": {
        "endpoint_id": "whe_sample",
        "status": "failed",
        "limit": 10,
        "cursor": "c",
    },
    "get_webhook_delivery": {"delivery_id": "whd_sample"},
    "replay_webhook_delivery": {"delivery_id": "whd_sample"},
    "list_audit_events": {
        "action": "key.created",
        "key_id": "key_sample",
        "actor": "operator",
        "since": _WHEN,
        "until": _WHEN,
        "limit": 10,
        "cursor": "c",
    },
}


# -- reading the document --------------------------------------------------------


@pytest.fixture(scope="module")
def document(app: KeyplaneApp) -> dict[str, Any]:
    return app.openapi()


def api_operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation object) for every operation of /api/v1."""
    for path, item in document["paths"].items():
        if not path.startswith(API_PREFIX + "/"):
            continue
        for method, operation in item.items():
            if method in {"get", "put", "post", "patch", "delete", "head", "options"}:
                yield method.upper(), path, operation


def resolve(document: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def nested_object(document: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object schema (with properties) inside a property's schema: through $ref,
    anyOf/oneOf (``X | null``) and arrays; {} if there is none."""
    schema = resolve(document, schema)
    if "properties" in schema:
        return schema
    for option in (*schema.get("anyOf", ()), *schema.get("oneOf", ())):
        found = nested_object(document, option)
        if found:
            return found
    if schema.get("type") == "array" and "items" in schema:
        return nested_object(document, schema["items"])
    return {}


def success_schema(operation: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for status, response in operation["responses"].items():
        if str(status).startswith("2"):
            content = response.get("content", {}).get("application/json")
            return content["schema"] if content else None
    return None


def body_schema(operation: Mapping[str, Any]) -> Mapping[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return content["schema"] if content else None


# -- reading the SDK -------------------------------------------------------------


def sdk_operations() -> dict[str, Callable[..., Operation[Any]]]:
    """Every public function of ``client/operations.py`` that builds an Operation."""
    found = {}
    for name, function in vars(operations).items():
        if name.startswith("_") or not inspect.isfunction(function):
            continue
        if function.__module__ != operations.__name__:
            continue
        returns = typing.get_type_hints(function).get("return")
        if typing.get_origin(returns) is Operation:
            found[name] = function
    return found


def answer_type(function: Callable[..., Operation[Any]]) -> Any:
    """``Model`` of an operation that returns ``Operation[Model]``."""
    return typing.get_args(typing.get_type_hints(function)["return"])[0]


def _substitute(hint: Any, mapping: Mapping[Any, Any]) -> Any:
    if isinstance(hint, TypeVar):
        return mapping.get(hint, hint)
    args = typing.get_args(hint)
    if not args:
        return hint
    new = tuple(_substitute(arg, mapping) for arg in args)
    origin = typing.get_origin(hint)
    if origin in {typing.Union, types.UnionType}:
        return typing.Union[new]  # noqa: UP007 (a union built at run time)
    return origin[new]


def model_fields(model: Any) -> dict[str, Any]:
    """The dataclass fields of an SDK model (``Page[Key]`` included) and their types."""
    origin = typing.get_origin(model) or model
    hints = typing.get_type_hints(origin)
    mapping = dict(zip(getattr(origin, "__parameters__", ()), typing.get_args(model), strict=False))
    return {
        field.name: _substitute(hints[field.name], mapping) for field in dataclasses.fields(origin)
    }


def model_in(hint: Any) -> Any:
    """The SDK model inside a field's type (``Key | None``, ``tuple[Key, ...]``), or None."""
    origin = typing.get_origin(hint) or hint
    if dataclasses.is_dataclass(origin):
        return hint
    for arg in typing.get_args(hint):
        if arg is not Ellipsis and (found := model_in(arg)) is not None:
            return found
    return None


def missing_in_model(
    document: Mapping[str, Any], schema: Mapping[str, Any], model: Any, where: str
) -> list[str]:
    """Properties of ``schema`` (recursively) that the SDK ``model`` has no field for."""
    properties = resolve(document, schema).get("properties", {})
    fields = model_fields(model)
    missing = []
    for name, property_schema in properties.items():
        if name not in fields:
            missing.append(f"{where}.{name}")
            continue
        nested = nested_object(document, property_schema)
        if not nested:
            continue
        inner = model_in(fields[name])
        if inner is None:
            missing.append(f"{where}.{name} (an object the SDK holds as a plain value)")
        else:
            missing += missing_in_model(document, nested, inner, f"{where}.{name}")
    return missing


def missing_in_body(
    document: Mapping[str, Any], schema: Mapping[str, Any], body: Any, where: str
) -> list[str]:
    """Properties of a request ``schema`` (recursively) that the built ``body`` lacks."""
    properties = resolve(document, schema).get("properties", {})
    if not isinstance(body, Mapping):
        return [f"{where} (nothing sent)"]
    missing = []
    for name, property_schema in properties.items():
        if name not in body:
            missing.append(f"{where}.{name}")
            continue
        nested = nested_object(document, property_schema)
        if nested and isinstance(body[name], Mapping):
            missing += missing_in_body(document, nested, body[name], f"{where}.{name}")
    return missing


def path_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template.removeprefix(API_PREFIX))
    return re.compile(
        "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    )


def built(name: str) -> Operation[Any]:
    return sdk_operations()[name](**SAMPLES[name])


def sdk_operation_for(method: str, path: str) -> str | None:
    pattern = path_pattern(path)
    for name in sdk_operations():
        operation = built(name)
        if operation.method == method and pattern.fullmatch(operation.path):
            return name
    return None


# -- the contract ----------------------------------------------------------------


def test_every_sdk_operation_has_sample_arguments_naming_all_its_parameters() -> None:
    for name, function in sdk_operations().items():
        assert name in SAMPLES, f"add operations.{name} to SAMPLES"
        parameters = set(inspect.signature(function).parameters)
        assert set(SAMPLES[name]) == parameters, f"SAMPLES[{name!r}] must give every argument"


def test_every_api_operation_has_an_sdk_operation(document: dict[str, Any]) -> None:
    uncovered = [
        f"{method} {path}"
        for method, path, _ in api_operations(document)
        if (method, path) not in NOT_FOR_THE_SDK and sdk_operation_for(method, path) is None
    ]
    assert uncovered == [], f"operations of /api/v1 the SDK does not call: {uncovered}"


def test_what_the_sdk_leaves_out_still_exists(document: dict[str, Any]) -> None:
    present = {(method, path) for method, path, _ in api_operations(document)}
    assert set(NOT_FOR_THE_SDK) <= present


def test_every_sdk_operation_is_an_api_operation(document: dict[str, Any]) -> None:
    routes = [(method, path_pattern(path)) for method, path, _ in api_operations(document)]
    for name in sdk_operations():
        operation = built(name)
        assert any(
            method == operation.method and pattern.fullmatch(operation.path)
            for method, pattern in routes
        ), f"operations.{name} sends {operation.method} {operation.path}, which the API lacks"


def test_every_response_property_has_a_field_in_the_sdk_model(document: dict[str, Any]) -> None:
    missing: list[str] = []
    for method, path, operation in api_operations(document):
        name = sdk_operation_for(method, path)
        schema = success_schema(operation)
        if name is None or schema is None:
            continue
        model = answer_type(sdk_operations()[name])
        if typing.get_origin(model) is list:  # a JSON array of one model
            [model] = typing.get_args(model)
            schema = resolve(document, schema)["items"]
        where = f"{method} {path} -> {getattr(model, '__name__', model)}"
        missing += missing_in_model(document, schema, model, where)
    assert missing == [], f"response properties the SDK models lack: {missing}"


def test_every_request_property_and_query_parameter_can_be_sent(
    document: dict[str, Any],
) -> None:
    missing: list[str] = []
    for method, path, operation in api_operations(document):
        name = sdk_operation_for(method, path)
        if name is None:
            continue
        sent = built(name)
        for parameter in operation.get("parameters", ()):
            if parameter["in"] == "query" and parameter["name"] not in sent.params:
                missing.append(f"{method} {path} ?{parameter['name']}")
        schema = body_schema(operation)
        if schema is not None:
            missing += missing_in_body(document, schema, sent.json, f"{method} {path} body")
    assert missing == [], f"what the API takes and operations.py cannot send: {missing}"


def test_both_clients_expose_every_sdk_operation() -> None:
    # Both clients share the resource classes; the calls on the clients themselves are
    # checked on each.
    bound: dict[type, set[str]] = {Client: set(), AsyncClient: set()}
    for owner in (Client, AsyncClient):
        for holder in (owner, Projects, Keys, Audit, Events, Policies, Webhooks):
            for attribute in vars(holder).values():
                if isinstance(attribute, call):
                    bound[owner].add(attribute.build.__name__)
    for owner, names in bound.items():
        unused = sorted(set(sdk_operations()) - names)
        assert unused == [], f"{owner.__name__} does not expose: {unused}"
