"""Schemathesis against the app's own /openapi.json: every operation, authenticated.

Bounded for ``make test`` (``KEYPLANE_FUZZ_EXAMPLES`` examples per operation, 15 by
default); docs/security.md gives the longer run. Checks: no 5xx, status codes,
content types, headers and bodies as the schema declares them, schema-invalid
data refused, credentials really required, and no hang (a watchdog dumps the
stacks and ends the run if a test takes two minutes).
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis.internal import lambda_sources
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from keyplane.app import create_app
from keyplane.service.limits.failed_keys import FailedKeyLimiter
from keyplane.service.services import Services
from tests.support import Tenant

EXAMPLES = int(os.environ.get("KEYPLANE_FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # data the schema forbids must not be accepted
    ignored_auth,  # a declared credential must actually be required
]


# Schemathesis builds its strategies at collection, and Hypothesis describes each
# filter lambda by parsing the module that holds it; for one large schemathesis
# module CPython 3.11.7's parser fails there with "SystemError: AST constructor
# recursion depth mismatch" (a CPython bug, fixed in 3.11.8). The description is
# only a repr: fall back to a plain one instead of failing the collection.
_describe_lambda = lambda_sources.lambda_description


def _lambda_description(f: Any) -> str:
    try:
        return _describe_lambda(f)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources.lambda_description = _lambda_description

#: The app under test, built here because Schemathesis reads its schema at collection.
APP = create_app()
# Not ``from_asgi("/openapi.json", APP)``: that fetches the schema inside the app's
# lifespan, which (with no services set yet) opens Services from the environment
# (the default data directory) and leaves their threads running all session.
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP
schema.location = "/openapi.json"


@pytest.fixture
def fuzz_target(services: Services, tenant: Tenant) -> Iterator[Tenant]:
    """The app on this test's services, with data for the fuzzer to stumble on."""
    APP.state.services = services
    client = TestClient(APP)
    for index in range(3):
        client.post(
            f"/api/v1/projects/{tenant.project_id}/keys",
            json={"name": f"seed {index}", "scopes": ["keys:read"]},
            headers=tenant.headers,
        )
    # The fuzzer sends many bad keys from one address: the brute-force limit is
    # tested elsewhere and would turn every later answer into a 429 here.
    services.failed_keys = FailedKeyLimiter("1000000 per minute")
    try:
        yield tenant
    finally:
        APP.state.services = None


@pytest.fixture(autouse=True)
def _watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_operation_answers_within_its_schema_and_never_5xx(
    case: schemathesis.Case, fuzz_target: Tenant
) -> None:
    case.call_and_validate(headers=fuzz_target.headers, checks=CHECKS)
