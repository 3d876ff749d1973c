"""The outbox: mail is written in the transaction of the event that causes it (an
invitation, a password reset) and sent afterwards by a worker, so a message goes
out exactly when its event committed, and a mail server that is down delays it
instead of failing the request.

Each message is claimed by one worker with a conditional UPDATE (a lease: a
worker that dies mid-send leaves it to another after :data:`LEASE`), so two
instances on one database never both send it. Failures are retried with
exponential backoff for :data:`GIVE_UP_AFTER`; a permanent refusal (5xx) ends
it at once. The body holds links with one-time tokens: it is stored sealed
(``service/sealing.py``) and deleted once sent. Nothing of it is ever logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from keyplane.core.ids import new_id
from keyplane.service.backoff import backoff
from keyplane.service.mail.smtp import PermanentFailure, SmtpSender, TemporaryFailure
from keyplane.service.sealing import SealBroken, Sealer
from keyplane.service.workers import Loop
from keyplane.storage.database import Database, after_commit
from keyplane.storage.models import OutboxMessage

logger = logging.getLogger("keyplane.mail")

TEMPLATES: Final = Path(__file__).parent / "templates"
#: How long a worker holds a message it is sending before another may take it.
LEASE: Final = timedelta(minutes=2)
#: Retries stop this long after the message was written (its links expire anyway).
GIVE_UP_AFTER: Final = timedelta(hours=24)
FIRST_RETRY: Final = timedelta(seconds=30)
MAX_RETRY_INTERVAL: Final = timedelta(hours=1)
BATCH: Final = 20


@dataclass(frozen=True, slots=True)
class Mail:
    """A rendered message."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class QueuedMail:
    """A message in the outbox as the operator sees it (``keyplane admin mail``)."""

    id: str
    recipient: str
    template: str
    created_at: datetime
    attempts: int
    status: str
    last_error: str | None
    mail: Mail | None


class MailTemplates:
    """``NAME.txt`` (a ``Subject:`` line, a blank line, the text) and ``NAME.html``."""

    def __init__(self, directory: Path = TEMPLATES) -> None:
        loader = FileSystemLoader(directory)
        self._text = Environment(loader=loader, autoescape=False, undefined=StrictUndefined)  # noqa: S701 - plain text
        self._html = Environment(
            loader=loader, autoescape=select_autoescape(["html"]), undefined=StrictUndefined
        )

    def render(self, name: str, context: Mapping[str, Any]) -> Mail:
        text = self._text.get_template(f"{name}.txt").render(context)
        head, _, body = text.partition("\n\n")
        if not head.startswith("Subject: "):
            raise ValueError(f"mail template {name}.txt must start with a Subject: line")
        html = self._html.get_template(f"{name}.html").render(context)
        return Mail(head.removeprefix("Subject: ").strip(), body.strip() + "\n", html)


class Outbox:
    def __init__(
        self,
        database: Database,
        sealer: Sealer,
        *,
        sender: SmtpSender | None,
        clock: Callable[[], datetime],
        poll_interval: float = 1.0,
        templates: MailTemplates | None = None,
    ) -> None:
        self._database = database
        self._sealer = sealer
        self._sender = sender
        self._clock = clock
        self._templates = templates or MailTemplates()
        #: The worker thread: woken after a commit that wrote mail, else every poll.
        self._loop = Loop(
            "outbox",
            lambda worker: self.run_once() > 0,
            interval=poll_interval,
            logger=logger,
        )
        self._worker = self._loop.worker

    @property
    def enabled(self) -> bool:
        """True when a mail server is configured (``KEYPLANE_SMTP_URL``)."""
        return self._sender is not None

    def enqueue(
        self, session: Session, *, recipient: str, template: str, context: Mapping[str, Any]
    ) -> str | None:
        """Write a message into the caller's transaction; it is sent after commit.
        Returns its id, or ``None`` when no mail server is configured (nothing is
        written: the caller shows the link to the person instead)."""
        if self._sender is None:
            return None
        mail = self._templates.render(template, context)
        now = self._clock()
        row = OutboxMessage(
            id=new_id("msg"),
            channel="email",
            recipient=recipient,
            template=template,
            body=self._sealer.seal(
                json.dumps({"subject": mail.subject, "text": mail.text, "html": mail.html})
            ),
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
        session.add(row)
        after_commit(session, self._loop.wake)
        return row.id

    # -- sending ---------------------------------------------------------------

    def run_once(self) -> int:
        """Send every message that is due and not held by another worker; how many went."""
        if self._sender is None:
            return 0
        sent = 0
        for pk in self._claim():
            sent += self._deliver(pk)
        return sent

    def _claim(self) -> list[int]:
        now = self._clock()
        with self._database.write() as session:
            due = session.scalars(
                select(OutboxMessage.pk)
                .where(
                    OutboxMessage.sent_at.is_(None),
                    OutboxMessage.failed_at.is_(None),
                    OutboxMessage.next_attempt_at <= now,
                    or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
                )
                .order_by(OutboxMessage.pk)
                .limit(BATCH)
            ).all()
            claimed = []
            for pk in due:
                result = session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.pk == pk,
                        OutboxMessage.sent_at.is_(None),
                        OutboxMessage.failed_at.is_(None),
                        or_(
                            OutboxMessage.claimed_until.is_(None),
                            OutboxMessage.claimed_until < now,
                        ),
                    )
                    .values(claimed_by=self._worker, claimed_until=now + LEASE)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    claimed.append(pk)
            return claimed

    def _deliver(self, pk: int) -> int:
        assert self._sender is not None
        with self._database.read() as session:
            row = session.scalar(select(OutboxMessage).where(OutboxMessage.pk == pk))
            if row is None or row.claimed_by != self._worker or row.body is None:
                return 0
            recipient, body, created_at, attempts = (
                row.recipient,
                row.body,
                row.created_at,
                row.attempts,
            )
            message_id = row.id
        try:
            mail = Mail(**json.loads(self._sealer.open(body)))
            self._sender.send(self._message(recipient, mail, message_id))
        except (PermanentFailure, SealBroken) as error:
            self._finish(pk, attempts + 1, error=f"gave up: {error}", failed=True)
            logger.warning(
                "mail %s to the outbox's recipient failed for good: %s", message_id, error
            )
            return 0
        except TemporaryFailure as error:
            retry_at = self._clock() + backoff(
                attempts + 1, first=FIRST_RETRY, cap=MAX_RETRY_INTERVAL
            )
            give_up = retry_at > created_at + GIVE_UP_AFTER
            self._finish(pk, attempts + 1, error=str(error), failed=give_up, retry_at=retry_at)
            logger.info(
                "mail %s not sent yet (%s); %s",
                message_id,
                error,
                "giving up" if give_up else "will retry",
            )
            return 0
        self._finish(pk, attempts + 1, error=None, failed=False, sent=True)
        return 1

    def _finish(
        self,
        pk: int,
        attempts: int,
        *,
        error: str | None,
        failed: bool,
        sent: bool = False,
        retry_at: datetime | None = None,
    ) -> None:
        now = self._clock()
        values: dict[str, Any] = {
            "attempts": attempts,
            "claimed_by": None,
            "claimed_until": None,
            "last_error": error,
        }
        if sent:
            values.update(sent_at=now, body=None)
        elif failed:
            values.update(failed_at=now, body=None)
        elif retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self._database.write() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.pk == pk, OutboxMessage.claimed_by == self._worker)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    def _message(self, recipient: str, mail: Mail, message_id: str) -> EmailMessage:
        assert self._sender is not None
        message = EmailMessage()
        message["From"] = self._sender.sender
        message["To"] = recipient
        message["Subject"] = mail.subject
        message["Date"] = format_datetime(self._clock())
        domain = parseaddr(self._sender.sender)[1].rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid(idstring=message_id, domain=domain)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(mail.text)
        message.add_alternative(mail.html, subtype="html")
        return message

    # -- the operator's view -------------------------------------------------------

    def queued(self, limit: int = 50) -> list[QueuedMail]:
        """The newest messages, opened (``keyplane admin mail``: the operator reads the
        database anyway)."""
        with self._database.read() as session:
            rows = session.scalars(
                select(OutboxMessage).order_by(OutboxMessage.pk.desc()).limit(limit)
            ).all()
            found = []
            for row in rows:
                mail = None
                if row.body is not None:
                    try:
                        mail = Mail(**json.loads(self._sealer.open(row.body)))
                    except SealBroken:
                        mail = None
                status = "sent" if row.sent_at else "failed" if row.failed_at else "waiting"
                found.append(
                    QueuedMail(
                        row.id,
                        row.recipient,
                        row.template,
                        row.created_at,
                        row.attempts,
                        status,
                        row.last_error,
                        mail,
                    )
                )
            return found

    # -- the worker thread -------------------------------------------------------

    def start(self) -> None:
        if self._sender is not None:
            self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
