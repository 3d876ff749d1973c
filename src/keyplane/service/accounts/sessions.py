"""Console sign-in: passwords checked with argon2id, sessions kept server-side.

A session token is 256 random bits, handed to the browser once (in a cookie)
and stored only as its SHA-256, like an API key. Signing in always issues a new
token and deletes the one the browser held (no session fixation); signing out
and changing the password delete sessions. The role is read afresh on every
request, so a removed member's sessions stop working at once.

A password is checked outside the write transaction (argon2 takes tens of
milliseconds); the transaction then locks the user's row and goes on only if
the hash it checked is still the one stored. A sign-in with the old password
cannot start a session, or write its rehash back, after a password change
committed, and of two concurrent changes from the same old password only one
wins.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from keyplane.config import DEFAULT_SESSION_IDLE_TIMEOUT, DEFAULT_SESSION_LIFETIME
from keyplane.core.errors import AuthenticationFailed, InvalidInput, StateConflict
from keyplane.core.ids import new_id
from keyplane.service.accounts.organizations import AccountService, check_email
from keyplane.service.accounts.sso_policy import SsoRequired, password_sign_in_allowed
from keyplane.service.audit import record_event
from keyplane.service.limits.sign_in_throttle import LoginThrottle
from keyplane.service.records import Actor, Role, SessionRecord
from keyplane.service.validation import clip_user_agent
from keyplane.storage.database import Database
from keyplane.storage.models import ConsoleSession, Membership, Organization, User

#: ``last_seen_at`` is written at most this often (a page view is not a write).
_TOUCH_EVERY: Final = timedelta(minutes=1)
_TOKEN_BYTES: Final = 32
_MAX_TOKEN_LENGTH: Final = 128


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just started; ``token`` goes into the cookie and nowhere else."""

    token: str = field(repr=False)
    record: SessionRecord


class SessionService:
    def __init__(
        self,
        database: Database,
        accounts: AccountService,
        throttle: LoginThrottle,
        *,
        clock: Callable[[], datetime],
        idle_timeout: timedelta = DEFAULT_SESSION_IDLE_TIMEOUT,
        lifetime: timedelta = DEFAULT_SESSION_LIFETIME,
    ) -> None:
        self._database = database
        self._accounts = accounts
        self.throttle = throttle
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime

    def sign_in(
        self,
        email: str,
        password: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
        replacing: str | None = None,
    ) -> NewSession:
        """Check the password (throttled) and start a session in the user's first organization.

        Raises :class:`~keyplane.service.limits.sign_in_throttle.TooManyAttempts` when the
        account or the IP has failed too often, ``AuthenticationFailed``
        (one message for every cause) when the e-mail or password is wrong, and
        :class:`~keyplane.service.accounts.sso_policy.SsoRequired` (after a right
        password only) when every organization of the user requires SSO of them.
        """
        email = email.strip().lower() if isinstance(email, str) else ""
        with self.throttle.attempt(email, client_ip):
            with self._database.read() as session:
                user = session.scalar(select(User).where(User.email == email)) if email else None
                password_hash = user.password_hash if user is not None else None
                user_id = user.id if user is not None else None
            if not self._accounts.verify_password(password_hash, password) or user_id is None:
                self.throttle.failed(email, client_ip)
                raise AuthenticationFailed("BAD_CREDENTIALS", "wrong e-mail address or password")
        with self._database.write() as session:
            if locked_password_hash(session, user_id) != password_hash:
                # The password changed since it was checked: the one given is not in force.
                self.throttle.failed(email, client_ip)
                raise AuthenticationFailed("BAD_CREDENTIALS", "wrong e-mail address or password")
            organizations = session.scalars(
                select(Membership.organization_id)
                .where(Membership.user_id == user_id)
                .order_by(Membership.pk)
            ).all()
            if not organizations:
                raise AuthenticationFailed(
                    "NO_ORGANIZATION", "this account belongs to no organization any more"
                )
            # The first organization a password may open (SSO policy, sso_policy.py).
            allowed = [
                organization_id
                for organization_id in organizations
                if password_sign_in_allowed(session, user_id, organization_id)
            ]
            if not allowed:
                raise SsoRequired()
            if password_hash is not None and self._accounts.needs_rehash(password_hash):
                row = session.scalar(select(User).where(User.id == user_id))
                if row is not None:
                    row.password_hash = self._accounts.hash_password(password)
            return self.start_in(
                session,
                user_id,
                allowed[0],
                client_ip=client_ip,
                user_agent=user_agent,
                replacing=replacing,
            )

    def start_in(
        self,
        session: Session,
        user_id: str,
        organization_id: str,
        *,
        client_ip: str | None,
        user_agent: str | None,
        replacing: str | None = None,
        method: str = "password",
    ) -> NewSession:
        """A new session inside the caller's transaction (sign-in, sign-up, joining)."""
        now = self._clock()
        if replacing:
            session.execute(
                delete(ConsoleSession).where(ConsoleSession.token_hash == hash_token(replacing))
            )
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        row = ConsoleSession(
            id=new_id("ses"),
            token_hash=hash_token(token),
            user_id=user_id,
            organization_id=organization_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.lifetime,
            authenticated_at=now,
            method=method,
            client_ip=client_ip,
            user_agent=clip_user_agent(user_agent),
        )
        session.add(row)
        session.flush()
        record_event(
            session,
            organization_id=organization_id,
            actor=Actor(f"user:{user_id}", client_ip, user_agent),
            action="user.signed_in",
            target_type="user",
            target_id=user_id,
            at=now,
            details={"method": method} if method != "password" else None,
        )
        record = _load(session, row)
        if record is None:  # pragma: no cover - the membership was just checked
            raise AuthenticationFailed("NO_ORGANIZATION", "no membership")
        return NewSession(token, record)

    def resolve(self, token: str | None) -> SessionRecord | None:
        """The live session for a cookie's token, or ``None`` (unknown, expired, idle, removed)."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            return None
        now = self._clock()
        token_hash = hash_token(token)
        with self._database.read() as session:
            row = session.scalar(
                select(ConsoleSession).where(ConsoleSession.token_hash == token_hash)
            )
            if row is None or row.expires_at <= now or row.last_seen_at + self.idle_timeout <= now:
                return None
            record = _load(session, row)
            stale = row.last_seen_at + _TOUCH_EVERY <= now
        if record is not None and stale:
            with self._database.write() as session:
                row = session.scalar(
                    select(ConsoleSession).where(ConsoleSession.token_hash == token_hash)
                )
                if row is not None:
                    row.last_seen_at = now
        return record

    def sign_out(self, token: str | None) -> None:
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            return
        with self._database.write() as session:
            session.execute(
                delete(ConsoleSession).where(ConsoleSession.token_hash == hash_token(token))
            )

    def end_all(self, organization_id: str | None = None) -> int:
        """End every console session (of one organization, when given); returns how many.

        Sessions are random tokens stored as hashes, not signed cookies: there is no
        server secret to rotate, and deleting the rows signs everyone out at once.
        """
        query = delete(ConsoleSession)
        if organization_id is not None:
            query = query.where(ConsoleSession.organization_id == organization_id)
        with self._database.write() as session:
            result = session.execute(query)
            return int(getattr(result, "rowcount", 0) or 0)

    def change_password(
        self, current: SessionRecord, old_password: str, new_password: str, *, actor: Actor
    ) -> None:
        """Set a new password and end every other session of this user."""
        with self._database.read() as session:
            user = session.scalar(select(User).where(User.id == current.user_id))
            password_hash = user.password_hash if user is not None else None
        if not self._accounts.verify_password(password_hash, old_password):
            self.throttle.failed(current.email, actor.client_ip)
            raise InvalidInput("the current password is not right", field="current_password")
        if new_password == old_password:
            raise InvalidInput("choose a password different from the current one", field="password")
        new_hash = self._accounts.hash_password(new_password)
        with self._database.write() as session:
            changed = session.execute(
                update(User)
                .where(User.id == current.user_id, User.password_hash == password_hash)
                .values(password_hash=new_hash)
                .execution_options(synchronize_session=False)
            )
            if int(getattr(changed, "rowcount", 0) or 0) != 1:
                raise StateConflict("the password was changed at the same time; sign in again")
            session.execute(
                delete(ConsoleSession).where(
                    ConsoleSession.user_id == current.user_id, ConsoleSession.id != current.id
                )
            )
            record_event(
                session,
                organization_id=current.organization_id,
                actor=actor,
                action="user.password_changed",
                target_type="user",
                target_id=current.user_id,
                at=self._clock(),
            )


def locked_password_hash(session: Session, user_id: str) -> str | None:
    """The user's stored password hash, the row locked until the transaction ends."""
    return session.scalar(
        select(User.password_hash).where(User.id == user_id).with_for_update(key_share=True)
    )


def _load(session: Session, row: ConsoleSession) -> SessionRecord | None:
    found = session.execute(
        select(User.email, Organization.name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .join(Organization, Organization.id == Membership.organization_id)
        .where(User.id == row.user_id, Membership.organization_id == row.organization_id)
    ).first()
    if found is None:
        return None
    email, organization_name, role = found
    return SessionRecord(
        id=row.id,
        user_id=row.user_id,
        email=email,
        organization_id=row.organization_id,
        organization_name=organization_name,
        role=Role(role),
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


__all__ = ["NewSession", "SessionService", "check_email", "hash_token"]
