"""Links mailed to a person: verify an e-mail address, reset a forgotten password.

A link carries a random token of which only the SHA-256 is stored
(``user_tokens``); it works once (a conditional UPDATE claims it) and expires.
A reset link is bound to the address it was sent to: it sets the password of
that account only, ends every session of it, and does not sign anyone in (a
second factor, where the account has one, is still asked at the next sign-in).

Asking for a reset answers the same whether or not the address has an account;
the mail goes out through the outbox (``service/mail/outbox.py``). A server
without SMTP mails nothing: the operator makes a reset link with ``keyplane
admin reset-password``, and a verification link is shown to the person who
signed up (it proves nothing more than they could do anyway without mail).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlencode

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from keyplane.core.errors import ObjectNotFound
from keyplane.core.ids import new_id
from keyplane.core.paths import CONSOLE_PREFIX
from keyplane.service.accounts.organizations import AccountService, check_email
from keyplane.service.accounts.sessions import hash_token
from keyplane.service.audit import record_account_event
from keyplane.service.limits.sign_in_throttle import LoginThrottle
from keyplane.service.mail.outbox import Outbox
from keyplane.service.records import Actor
from keyplane.storage.database import Database
from keyplane.storage.models import ConsoleSession, User, UserToken

VERIFY_EMAIL: Final = "verify_email"
RESET_PASSWORD: Final = "reset_password"  # noqa: S105 - a purpose, not a password
LIFETIMES: Final = {VERIFY_EMAIL: timedelta(hours=24), RESET_PASSWORD: timedelta(minutes=30)}
PAGES: Final = {VERIFY_EMAIL: "/verify-email", RESET_PASSWORD: "/reset-password"}
_MAX_TOKEN_LENGTH: Final = 128


@dataclass(frozen=True, slots=True)
class Link:
    """A link just made; ``url`` holds the token (shown or mailed, never logged)."""

    url: str = field(repr=False)
    expires_at: datetime
    #: True when it went into the outbox; False: no mail server, show it instead.
    mailed: bool


def words(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % 60:
        return f"{minutes} minutes"
    hours = minutes // 60
    return "1 hour" if hours == 1 else f"{hours} hours"


class EmailLinks:
    def __init__(
        self,
        database: Database,
        accounts: AccountService,
        outbox: Outbox,
        throttle: LoginThrottle,
        *,
        console_url: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._database = database
        self._accounts = accounts
        self._outbox = outbox
        self._throttle = throttle
        self._console_url = console_url.rstrip("/")
        self._clock = clock

    @property
    def mail_enabled(self) -> bool:
        return self._outbox.enabled

    def url(self, purpose: str, token: str) -> str:
        return f"{self._console_url}{CONSOLE_PREFIX}{PAGES[purpose]}?" + urlencode({"token": token})

    def issue(
        self, session: Session, user_id: str, email: str, purpose: str, **context: str
    ) -> Link:
        """A new link for ``purpose`` inside the caller's transaction, mailed when mail
        is on. Earlier open links of the same purpose stop working (one at a time)."""
        now = self._clock()
        session.execute(
            update(UserToken)
            .where(
                UserToken.user_id == user_id,
                UserToken.purpose == purpose,
                UserToken.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        token = secrets.token_urlsafe(32)
        lifetime = LIFETIMES[purpose]
        session.add(
            UserToken(
                id=new_id("utk"),
                token_hash=hash_token(token),
                user_id=user_id,
                purpose=purpose,
                email=email,
                created_at=now,
                expires_at=now + lifetime,
                used_at=None,
            )
        )
        url = self.url(purpose, token)
        queued = self._outbox.enqueue(
            session,
            recipient=email,
            template=purpose,
            context={
                "email": email,
                "url": url,
                "expires_in": words(lifetime),
                "console_url": self._console_url,
                **context,
            },
        )
        return Link(url, now + lifetime, mailed=queued is not None)

    def notify(self, session: Session, email: str, template: str) -> None:
        """A mail with no link of its own (``account_exists``), in the caller's transaction."""
        self._outbox.enqueue(
            session,
            recipient=email,
            template=template,
            context={
                "email": email,
                "console_url": self._console_url,
                "signin_url": f"{self._console_url}{CONSOLE_PREFIX}/signin",
                "reset_url": f"{self._console_url}{CONSOLE_PREFIX}/forgot-password",
            },
        )

    # -- verifying an address ------------------------------------------------------

    def send_verification(self, user_id: str, *, actor: Actor) -> Link:
        """A new verification link for the user's address (sign-up, "send again")."""
        with self._database.write() as session:
            user = session.scalar(select(User).where(User.id == user_id))
            if user is None:
                raise ObjectNotFound("user", user_id)
            link = self.issue(session, user.id, user.email, VERIFY_EMAIL)
            record_account_event(
                session,
                user.id,
                actor,
                "user.verification_sent",
                at=self._clock(),
                details={"mailed": link.mailed},
            )
            return link

    def verify_email(self, token: str, *, actor_ip: str | None, user_agent: str | None) -> str:
        """Mark the address verified; returns it. Unknown, used or expired: ObjectNotFound."""
        now = self._clock()
        with self._database.write() as session:
            row = self._claim(session, token, VERIFY_EMAIL, now)
            user = session.scalar(select(User).where(User.id == row.user_id))
            if user is None or user.email != row.email:  # the address changed since
                raise ObjectNotFound("link", "that link")
            if user.email_verified_at is None:
                user.email_verified_at = now
            record_account_event(
                session,
                user.id,
                Actor(f"user:{user.id}", actor_ip, user_agent),
                "user.email_verified",
                at=now,
                details={"email": user.email},
            )
            return user.email

    # -- resetting a password --------------------------------------------------------

    def request_reset(
        self, email: str, *, client_ip: str | None = None, user_agent: str | None = None
    ) -> None:
        """Mail a reset link if ``email`` has an account; the same (silent) answer if
        not. Throttled per address and per IP like sign-in, so the endpoint cannot
        flood an inbox or probe addresses quickly."""
        email = check_email(email)
        with self._throttle.attempt(f"reset:{email}", client_ip):
            self._throttle.failed(f"reset:{email}", client_ip)  # every request counts
            with self._database.write() as session:
                user = session.scalar(select(User).where(User.email == email))
                if user is None:
                    return
                self.issue(session, user.id, user.email, RESET_PASSWORD)
                record_account_event(
                    session,
                    user.id,
                    Actor("anonymous", client_ip, user_agent),
                    "user.password_reset_requested",
                    at=self._clock(),
                )

    def reset_link(self, email: str) -> Link:
        """A reset link for the operator to hand over (``keyplane admin reset-password``)."""
        email = check_email(email)
        with self._database.write() as session:
            user = session.scalar(select(User).where(User.email == email))
            if user is None:
                raise ObjectNotFound("user", email)
            link = self.issue(session, user.id, user.email, RESET_PASSWORD)
            record_account_event(
                session,
                user.id,
                Actor.operator(),
                "user.password_reset_requested",
                at=self._clock(),
            )
            return link

    def reset_address(self, token: str) -> str:
        """The address an open reset link is for (the page shows it), or ObjectNotFound."""
        with self._database.read() as session:
            return self._open(session, token, RESET_PASSWORD, self._clock()).email

    def reset_password(
        self,
        token: str,
        password: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> str:
        """Set the password of the link's account, end all its sessions; returns the
        address. The link also proves the address, so it is marked verified."""
        new_hash = self._accounts.hash_password(password)  # before any look-up
        now = self._clock()
        with self._database.write() as session:
            row = self._claim(session, token, RESET_PASSWORD, now)
            user = session.scalar(select(User).where(User.id == row.user_id).with_for_update())
            if user is None or user.email != row.email:
                raise ObjectNotFound("link", "that link")
            user.password_hash = new_hash
            if user.email_verified_at is None:
                user.email_verified_at = now
            ended = session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
            record_account_event(
                session,
                user.id,
                Actor(f"user:{user.id}", client_ip, user_agent),
                "user.password_reset",
                at=now,
                details={"sessions_ended": int(getattr(ended, "rowcount", 0) or 0)},
            )
            return user.email

    # -- tokens ------------------------------------------------------------------------

    def _open(self, session: Session, token: str, purpose: str, now: datetime) -> UserToken:
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
            raise ObjectNotFound("link", "that link")
        row = session.scalar(select(UserToken).where(UserToken.token_hash == hash_token(token)))
        if (
            row is None
            or row.purpose != purpose
            or row.used_at is not None
            or row.expires_at <= now
        ):
            raise ObjectNotFound("link", "that link")
        return row

    def _claim(self, session: Session, token: str, purpose: str, now: datetime) -> UserToken:
        """Use the link, once: of two concurrent uses one matches no row."""
        row = self._open(session, token, purpose, now)
        claimed = session.execute(
            update(UserToken)
            .where(UserToken.pk == row.pk, UserToken.used_at.is_(None), UserToken.expires_at > now)
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise ObjectNotFound("link", "that link")
        return row
