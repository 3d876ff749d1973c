"""Two real ``keyplane serve`` processes on one PostgreSQL schema: each event is
fanned out and delivered exactly once, whichever instance raised it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.cli.test_scale_out import bootstrap, instance
from tests.processes import fresh
from tests.webhook_receiver import Receiver, running_receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def test_two_instances_deliver_each_revocation_exactly_once(
    postgres_schema_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    project, management = bootstrap(postgres_schema_url, tmp_path)
    manage = {"Authorization": f"Bearer {management}"}
    shared = {
        "KEYPLANE_OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
        # Both instances must open the secrets the other sealed.
        "KEYPLANE_SECRET_KEY": secrets.token_urlsafe(32),
    }
    with ExitStack() as stack:
        a = stack.enter_context(instance(postgres_schema_url, tmp_path / "a.log", **shared))
        b = stack.enter_context(instance(postgres_schema_url, tmp_path / "b.log", **shared))
        created = fresh.post(
            f"{a}/api/v1/webhooks",
            json={"url": receiver.url, "event_types": ["key.revoked"]},
            headers=manage,
        )
        assert created.status_code == 201, created.text
        receiver.secrets.append(created.json()["secret"])
        revoked = set()
        for number in range(10):
            through = (a, b)[number % 2]
            key = fresh.post(
                f"{through}/api/v1/projects/{project}/keys",
                json={"name": f"k{number}"},
                headers=manage,
            ).json()
            assert fresh.delete(f"{through}/api/v1/keys/{key['id']}", headers=manage).is_success
            revoked.add(key["id"])
        got = receiver.wait_for(10, timeout=30)
        time.sleep(3)  # a second copy, from either instance, would have arrived by now
    assert len(receiver.received) == 10
    assert {item.payload["data"]["key"]["id"] for item in got} == revoked
    assert len({item.headers["webhook-id"] for item in got}) == 10
    assert all(item.verified_by == [0] for item in got)
