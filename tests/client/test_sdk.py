"""The SDK against a real Keyplane server: every call, typed answers and typed errors."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import keyplane
from keyplane.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    CreatedKey,
    InvalidAPIKey,
    Key,
    NotFound,
    PermissionDenied,
    TransportError,
)
from keyplane.client.models import Allowance, VerifyResult
from keyplane.core.keys import KeyFormat
from tests.live import LiveServer


@pytest.fixture
def tenant_client(server: LiveServer) -> Iterator[tuple[Client, str]]:
    tenant = server.tenant()
    with Client(tenant.key, base_url=server.url, max_retries=0) as client:
        yield client, tenant.project_id


def test_whoami_is_typed_and_its_str_names_the_key_and_project(server: LiveServer) -> None:
    tenant = server.tenant()
    with Client(tenant.key, base_url=server.url) as client:
        me = client.whoami()
    assert me.id == tenant.key_id
    assert me.name == "Management key"
    assert me.project_id == tenant.project_id
    assert me.scopes == ("*",)
    text = str(me)
    assert "Management key" in text
    assert tenant.project_id in text
    assert tenant.key not in text
    assert tenant.key not in repr(me)


def test_projects_create_get_list_and_iterate(tenant_client: tuple[Client, str]) -> None:
    client, default_project = tenant_client
    created = [client.projects.create(f"Research {n}") for n in range(3)]
    assert client.projects.get(created[0].id) == created[0]
    page = client.projects.list(limit=2)
    assert len(page.items) == 2
    assert page.next_cursor is not None
    every = list(client.projects.iter(page_size=2))
    assert [p.id for p in every] == [*(p.id for p in reversed(created)), default_project]


def test_key_lifecycle_through_the_sdk(tenant_client: tuple[Client, str]) -> None:
    client, project = tenant_client
    expires = datetime.now(UTC) + timedelta(days=30)
    created = client.keys.create(
        project,
        name="ci",
        scopes=["keys:read"],
        expires_at=expires,
        ip_allowlist=["127.0.0.0/8"],
        metadata={"team": "qa"},
    )
    assert isinstance(created, CreatedKey)
    value = created.key.reveal()
    assert KeyFormat().is_key(value)
    assert value not in repr(created)
    assert value not in str(created)
    assert created.metadata == {"team": "qa"}
    assert created.expires_at is not None
    assert abs(created.expires_at - expires) < timedelta(0, 1)

    fetched = client.keys.get(created.id)
    assert isinstance(fetched, Key)
    assert not isinstance(fetched, CreatedKey)
    updated = client.keys.update(created.id, name="ci-2", expires_at=None, enabled=False)
    assert (updated.name, updated.expires_at, updated.status) == ("ci-2", None, "disabled")
    client.keys.update(created.id, enabled=True)

    rolled = client.keys.roll(created.id, grace_period=timedelta(hours=1))
    assert rolled.rolled_from_id == created.id
    assert rolled.key.reveal() != value
    revoked = client.keys.revoke(created.id)
    assert revoked.status == "revoked"
    assert client.keys.revoke(created.id).status == "revoked"  # harmless again

    statuses = {key.id: key.status for key in client.keys.iter(project, page_size=1)}
    assert statuses[created.id] == "revoked"
    assert statuses[rolled.id] == "active"
    assert [k.id for k in client.keys.iter(project, status="revoked")] == [created.id]

    actions = [event.action for event in client.audit.iter(key_id=created.id, page_size=2)]
    assert actions == ["key.revoked", "key.rolled", "key.enabled", "key.updated", "key.created"]


def test_verify_answers_codes_and_never_holds_the_key(
    server: LiveServer, tenant_client: tuple[Client, str]
) -> None:
    client, project = tenant_client
    created = client.keys.create(project, name="svc", scopes=["jobs:run"])
    good = client.verify(created.key, scopes=["jobs:run"], client_ip="203.0.113.7")
    assert good.valid
    assert good.code == "VALID"
    assert good.key_id == created.id
    lacking = client.verify(created.key.reveal(), scopes=["jobs:admin"])
    assert (lacking.valid, lacking.code, lacking.missing_scopes) == (
        False,
        "INSUFFICIENT_SCOPE",
        ("jobs:admin",),
    )
    assert client.verify(KeyFormat().generate()).code == "NOT_FOUND"
    long_agent = client.verify(created.key, user_agent="agent/" + "x" * 2000)
    assert long_agent.valid  # clipped to the 512 characters /verify takes
    client.keys.revoke(created.id)
    assert client.verify(created.key).code == "REVOKED"
    assert created.key.reveal() not in repr(good)


def test_errors_are_typed(server: LiveServer, tenant_client: tuple[Client, str]) -> None:
    client, project = tenant_client
    with pytest.raises(NotFound) as not_found:
        client.keys.get("key_0000000000000000")
    assert not_found.value.status == 404
    assert not_found.value.code == "NOT_FOUND"
    with pytest.raises(BadRequest) as bad:
        client.keys.create(project, name="x", scopes=["Not A Scope"])
    assert bad.value.field == "scopes"
    with pytest.raises(Conflict):
        client.projects.create("Default")
    created = client.keys.create(project, name="reader", scopes=["keys:read"])
    with Client(created.key, base_url=server.url) as reader:
        with pytest.raises(PermissionDenied) as denied:
            reader.keys.create(project, name="nope")
        assert denied.value.code == "INSUFFICIENT_SCOPE"
        client.keys.revoke(created.id)
        with pytest.raises(InvalidAPIKey) as refused:
            reader.whoami()
    assert refused.value.code == "REVOKED"
    assert created.key.hint in str(refused.value)


def test_a_key_is_never_put_in_a_url(tenant_client: tuple[Client, str]) -> None:
    client, _project = tenant_client
    value = KeyFormat().generate().reveal()
    with pytest.raises(ValueError, match="never") as caught:
        client.keys.get(value)
    assert value not in str(caught.value)
    with pytest.raises(ValueError, match="URL"):
        client.audit.list(key_id=value)


def test_the_key_never_appears_in_reprs_errors_or_logs(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = server.tenant()
    seen: list[str] = []
    with Client(tenant.key, base_url=server.url, max_retries=0) as client:
        seen += [repr(client), str(client), repr(client._http.headers), repr(client._http.auth)]
        server.revoke(tenant, tenant.key_id)
        try:
            client.whoami()
        except InvalidAPIKey as error:
            seen += [str(error), repr(error), "".join(traceback.format_exception(error))]
    unreachable = Client(tenant.key, base_url="http://127.0.0.1:9", max_retries=1)
    unreachable._sleep = lambda _: None
    with pytest.raises(TransportError) as caught:
        unreachable.whoami()
    unreachable.close()
    seen += [str(caught.value), "".join(traceback.format_exception(caught.value))]
    seen += [record.getMessage() for record in caplog.records]
    assert seen
    assert all(tenant.key not in text for text in seen)
    assert any("retrying GET /api/v1/whoami" in text for text in seen)


def test_the_async_client_covers_the_same_calls(server: LiveServer) -> None:
    import anyio

    tenant = server.tenant()

    async def scenario() -> None:
        async with AsyncClient(tenant.key, base_url=server.url) as client:
            me = await client.whoami()
            assert me.id == tenant.key_id
            created = await client.keys.create(tenant.project_id, name="a", scopes=["x:y"])
            assert (await client.verify(created.key, scopes=["x:y"])).valid
            await client.keys.update(created.id, metadata={"n": 1})
            rolled = await client.keys.roll(created.id, grace_period=0)
            await client.keys.revoke(rolled.id)
            ids = [key.id async for key in client.keys.iter(tenant.project_id, page_size=1)]
            assert ids == [rolled.id, created.id, tenant.key_id]
            projects = [p.id async for p in client.projects.iter()]
            assert projects == [tenant.project_id]
            events = [e.action async for e in client.audit.iter(key_id=created.id)]
            assert events[0] == "key.rolled"
            with pytest.raises(NotFound):
                await client.projects.get("prj_0000000000000000")

    anyio.run(scenario)


def test_client_from_the_environment(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = server.tenant()
    monkeypatch.setenv("KEYPLANE_URL", server.url)
    monkeypatch.setenv("KEYPLANE_API_KEY", tenant.key)
    with keyplane.Client() as client:
        assert client.base_url == server.url
        assert client.key_source == "the environment variable KEYPLANE_API_KEY"
        assert client.whoami().id == tenant.key_id


def test_verify_result_reads_limits_and_the_wait_from_the_exhausted_one() -> None:
    reset = datetime.now(UTC) + timedelta(seconds=30)
    answer = VerifyResult.from_json(
        {
            "valid": False,
            "code": "RATE_LIMITED",
            "rate_limit": {"limit": 5, "remaining": 0, "reset": reset.isoformat()},
            "quota": {"limit": 100, "remaining": 40, "reset": None},
        }
    )
    assert answer.rate_limit == Allowance(5, 0, reset)
    assert answer.quota == Allowance(100, 40, None)
    assert answer.retry_after is not None
    assert 28 < answer.retry_after <= 30
    assert answer.to_json()["quota"] == {"limit": 100, "remaining": 40, "reset": None}
    spent = VerifyResult.from_json(
        {"valid": False, "code": "USAGE_EXCEEDED", **{"quota": answer.to_json()["quota"]}}
    )
    assert spent.retry_after is None  # a quota that never refills: no wait helps


def test_key_policies_through_the_sdk(tenant_client: tuple[Client, str]) -> None:
    client, _ = tenant_client
    assert client.policies.get().stale_days is None
    preview = client.policies.dry_run(max_lifetime_seconds=90 * 86400)
    assert {group.action for group in preview.groups} >= {"no_expiry"}
    assert preview.policy.max_lifetime_seconds == 90 * 86400
    assert client.policies.get().max_lifetime_seconds is None  # nothing saved
    changed = client.policies.update(stale_days=60, stale_disable=True)
    assert (changed.stale_days, changed.stale_disable) == (60, True)
    assert client.policies.update(stale_disable=False, stale_days=None).stale_days is None
