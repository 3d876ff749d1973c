from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from keyplane.core.scopes import ALL
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from tests.support import Tenant

BELL: dict[str, Any] = {
    "type": "ionq.circuit.v1",
    "backend": "simulator",
    "shots": 1000,
    "input": {
        "gateset": "qis",
        "qubits": 2,
        "circuit": [{"gate": "h", "targets": [0]}, {"gate": "cnot", "control": 0, "target": 1}],
    },
}


def operator(tenant: Tenant) -> Caller:
    return Caller(tenant.organization_id, (ALL,), Actor.operator())


@pytest.fixture
def make_key(services: Services, tenant: Tenant) -> Callable[..., dict[str, str]]:
    """A key in the tenant's project (or ``project_id``) with these scopes: id, key, headers."""

    def make(*scopes: str, project_id: str | None = None, name: str = "jobs") -> dict[str, str]:
        created = services.keys.create(
            operator(tenant), project_id or tenant.project_id, name=name, scopes=scopes
        )
        key = created.secret.reveal()
        return {"id": created.record.id, "key": key, "authorization": f"apiKey {key}"}

    return make


def ionq_headers(key: dict[str, str]) -> dict[str, str]:
    return {"Authorization": key["authorization"]}
