from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.support import Tenant, bearer


@pytest.fixture
def make_key(client: TestClient, tenant: Tenant) -> Callable[..., dict[str, object]]:
    """Create a key through the API with the tenant's management key; returns the JSON."""

    def make(*scopes: str, **fields: object) -> dict[str, object]:
        body = {"name": fields.pop("name", "test key"), "scopes": list(scopes), **fields}
        response = client.post(
            f"/api/v1/projects/{tenant.project_id}/keys", json=body, headers=tenant.headers
        )
        assert response.status_code == 201, response.text
        created: dict[str, object] = response.json()
        return created

    return make


__all__ = ["bearer"]
