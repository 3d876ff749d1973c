"""Two real ``keyplane serve`` processes on one PostgreSQL schema: each event is
fanned out and delivered exactly once, whichever instance raised it."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select

from keyplane.storage.database import Database
from keyplane.storage.models import Membership, User
from tests.cli.test_scale_out import bootstrap, instance
from tests.mail import MailServer, mail_server  # noqa: F401 - the fixture
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


def test_two_instances_send_every_event_once_by_webhook_and_by_mail(
    postgres_schema_url: str,
    tmp_path: Path,
    receiver: Receiver,
    mail_server: MailServer,  # noqa: F811
) -> None:
    """Events from the API (created, revoked) and from the scheduler (expiring) on two
    instances that both scan: each reaches the webhook once, signed, and each mailed
    one reaches the owner once."""
    project, management = bootstrap(postgres_schema_url, tmp_path)
    manage = {"Authorization": f"Bearer {management}"}
    shared = {
        "KEYPLANE_OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
        "KEYPLANE_SECRET_KEY": secrets.token_urlsafe(32),
        "KEYPLANE_SMTP_URL": mail_server.url,
        "KEYPLANE_SCHEDULER_INTERVAL": "0.3",
    }
    with ExitStack() as stack:
        a = stack.enter_context(instance(postgres_schema_url, tmp_path / "a.log", **shared))
        b = stack.enter_context(instance(postgres_schema_url, tmp_path / "b.log", **shared))
        created = fresh.post(
            f"{b}/api/v1/webhooks",
            json={"url": receiver.url, "event_types": ["key.*"]},
            headers=manage,
        )
        assert created.status_code == 201, created.text
        receiver.secrets.append(created.json()["secret"])
        for number in range(8):  # each expires in 3 days: the 7-day notice, from a scan
            answer = fresh.post(
                f"{(a, b)[number % 2]}/api/v1/projects/{project}/keys",
                json={"name": f"expiring {number}", "expires_in": "3d"},
                headers=manage,
            )
            assert answer.status_code == 201, answer.text
        for number in range(4):  # made through one instance, revoked through the other
            key = fresh.post(
                f"{(a, b)[number % 2]}/api/v1/projects/{project}/keys",
                json={"name": f"short {number}"},
                headers=manage,
            ).json()
            revoked = fresh.delete(f"{(b, a)[number % 2]}/api/v1/keys/{key['id']}", headers=manage)
            assert revoked.is_success
        expected = Counter({"key.created": 12, "key.expiring": 8, "key.revoked": 4})
        receiver.wait_for(sum(expected.values()), timeout=60)
        owner = owner_of(postgres_schema_url, tmp_path)
        mail_server.wait_for(owner, 12, timeout=60)  # 8 expiring + 4 revoked
        time.sleep(3)  # a second copy, from either instance, would have arrived by now
    got = receiver.received
    assert Counter(item.payload["type"] for item in got) == expected
    assert len({item.headers["webhook-id"] for item in got}) == len(got)
    assert all(item.verified_by == [0] for item in got)
    subjects = Counter(item.subject.split(": ")[0] for item in mail_server.to(owner))
    assert subjects == {"[Keyplane] A key expires soon": 8, "[Keyplane] A key was revoked": 4}


def owner_of(database_url: str, tmp_path: Path) -> str:
    """The address of the owner of the newest organization (``bootstrap`` made it)."""
    database = Database(database_url)
    try:
        with database.read() as session:
            return str(
                session.scalars(
                    select(User.email)
                    .join(Membership, Membership.user_id == User.id)
                    .order_by(Membership.pk.desc())
                    .limit(1)
                ).one()
            )
    finally:
        database.dispose()
