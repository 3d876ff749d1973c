"""The outbox against a real SMTP server: sent after commit only, once, retried,
sealed at rest, and claimed by one worker when two share a database."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from keyplane.config import Settings
from keyplane.service.mail.outbox import GIVE_UP_AFTER, Outbox
from keyplane.service.mail.smtp import SmtpSender
from keyplane.service.services import Services
from keyplane.storage.models import OutboxMessage
from tests.mail import MailServer, mail_server  # noqa: F401 - the fixture
from tests.support import Clock

CONTEXT = {
    "email": "ada@example.test",
    "url": "http://console.test/console/reset-password?token=SECRET-TOKEN-123",
    "expires_in": "30 minutes",
    "console_url": "http://console.test",
}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, mail_server: MailServer) -> Settings:  # noqa: F811
    return Settings(data_dir=tmp_path, database_url=database_url, smtp_url=mail_server.url)


def enqueue(services: Services, recipient: str = "ada@example.test") -> str:
    with services.database.write() as session:
        message_id = services.outbox.enqueue(
            session, recipient=recipient, template="reset_password", context=CONTEXT
        )
    assert message_id
    return message_id


def rows(services: Services) -> list[OutboxMessage]:
    with services.database.read() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.pk)))


def test_a_message_is_sent_once_after_commit_with_text_and_html(
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    enqueue(services)
    assert services.outbox.run_once() == 1
    assert services.outbox.run_once() == 0
    (received,) = mail_server.to("ada@example.test")
    assert received.subject == "Reset your Keyplane password"
    assert CONTEXT["url"] in received.text
    assert CONTEXT["url"].replace("?", "?") in received.html
    assert received.message["From"] == "Keyplane <keyplane@localhost>"
    assert received.message["Message-ID"]
    (row,) = rows(services)
    assert row.sent_at is not None
    assert row.body is None
    assert row.attempts == 1


def test_nothing_is_sent_for_a_transaction_that_rolled_back(
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    class Boom(Exception):
        pass

    def fail_after_enqueue() -> None:
        with services.database.write() as session:
            services.outbox.enqueue(
                session, recipient="ada@example.test", template="reset_password", context=CONTEXT
            )
            raise Boom

    with pytest.raises(Boom):
        fail_after_enqueue()
    assert services.outbox.run_once() == 0
    assert rows(services) == []
    assert mail_server.received == []


def test_the_body_is_sealed_at_rest(services: Services) -> None:
    enqueue(services)
    (row,) = rows(services)
    assert row.body is not None
    assert "SECRET-TOKEN-123" not in row.body
    assert "ada@example.test" not in row.body
    assert "SECRET-TOKEN-123" in services.sealer.open(row.body)


def test_a_temporary_refusal_is_retried_with_backoff(
    services: Services,
    mail_server: MailServer,  # noqa: F811
    clock: Clock,
) -> None:
    mail_server.refuse_next = ["451 4.3.0 try again later", "451 4.3.0 try again later"]
    enqueue(services)
    assert services.outbox.run_once() == 0
    (row,) = rows(services)
    assert row.attempts == 1
    assert row.sent_at is None
    assert "451" in (row.last_error or "")
    first_wait = row.next_attempt_at - clock()
    assert services.outbox.run_once() == 0  # not due yet
    clock.advance(first_wait)
    assert services.outbox.run_once() == 0  # refused again
    (row,) = rows(services)
    assert row.next_attempt_at - clock() == 2 * first_wait  # exponential
    clock.advance(2 * first_wait)
    assert services.outbox.run_once() == 1
    assert len(mail_server.to("ada@example.test")) == 1
    (row,) = rows(services)
    assert row.attempts == 3
    assert row.sent_at is not None
    assert row.body is None


def test_a_permanent_refusal_gives_up_at_once(
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    mail_server.refuse_next = ["550 5.1.1 no such mailbox"]
    enqueue(services)
    assert services.outbox.run_once() == 0
    (row,) = rows(services)
    assert row.failed_at is not None
    assert row.body is None
    assert "550" in (row.last_error or "")
    assert services.outbox.run_once() == 0


def test_retries_stop_a_day_after_the_message_was_written(services: Services, clock: Clock) -> None:
    enqueue(services)
    down = Outbox(
        services.database,
        services.sealer,
        sender=SmtpSender("smtp://127.0.0.1:9", "Keyplane <k@localhost>", timeout=2),
        clock=clock,
    )
    while rows(services)[0].failed_at is None:
        down.run_once()
        clock.advance(timedelta(hours=1))
        assert clock() - rows(services)[0].created_at < GIVE_UP_AFTER + timedelta(hours=2)
    (row,) = rows(services)
    assert row.sent_at is None
    assert row.body is None


def test_a_held_message_is_left_to_its_worker_until_the_lease_ends(
    services: Services,
    mail_server: MailServer,  # noqa: F811
    clock: Clock,
) -> None:
    enqueue(services)
    other = Outbox(
        services.database,
        services.sealer,
        sender=SmtpSender(mail_server.url, "Keyplane <k@localhost>"),
        clock=clock,
    )
    assert other._claim()  # another worker took it and died before sending
    assert services.outbox.run_once() == 0
    clock.advance(timedelta(minutes=3))
    assert services.outbox.run_once() == 1
    assert len(mail_server.to("ada@example.test")) == 1


def test_the_worker_sends_right_after_commit(
    services: Services,
    mail_server: MailServer,  # noqa: F811
) -> None:
    services.outbox.start()
    try:
        enqueue(services, "grace@example.test")
        mail_server.wait_for("grace@example.test", timeout=5)
    finally:
        services.outbox.stop()


@pytest.mark.postgres
def test_two_instances_send_each_message_once(
    tmp_path: Path,
    postgres_schema_url: str,
    mail_server: MailServer,  # noqa: F811
) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=postgres_schema_url, smtp_url=mail_server.url
    )
    first = Services.open(settings)
    second = Services.open(settings)
    try:
        for index in range(30):
            enqueue(first, f"user{index}@example.test")
        barrier = threading.Barrier(4)
        sent: list[int] = []

        def drain(services: Services) -> None:
            barrier.wait()
            while True:
                count = services.outbox.run_once()
                sent.append(count)
                if not count:
                    return

        threads = [
            threading.Thread(target=drain, args=(instance,))
            for instance in (first, second, first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sum(sent) == 30
        assert sorted(address for item in mail_server.received for address in item.to) == sorted(
            f"user{index}@example.test" for index in range(30)
        )
    finally:
        first.close()
        second.close()
