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

A session has a **stage** (:class:`SessionStage`). A right password for a user
with a second factor starts a ``second_factor`` session (ten minutes) that only
the factor page accepts; a TOTP code, a recovery code or a passkey replaces it
with a new ``active`` one (a new token: no fixation). In an organization that
requires a second factor, a user without one gets an ``enrol_factor`` session
that only reaches enrolment. :meth:`SessionService.stage_for` is the one rule,
for every way into an organization (sign-in, sign-up, joining, switching).
:meth:`SessionService.resolve` returns only active sessions unless asked for a
stage by name.
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
from keyplane.core.errors import (
    AuthenticationFailed,
    InvalidInput,
    ObjectNotFound,
    StateConflict,
)
from keyplane.core.ids import is_id, new_id
from keyplane.service.accounts.factors import FactorService, has_factor
from keyplane.service.accounts.organizations import AccountService, check_email
from keyplane.service.accounts.sso_policy import SsoRequired, password_sign_in_allowed
from keyplane.service.audit import record_account_event, record_event
from keyplane.service.limits.sign_in_throttle import LoginThrottle
from keyplane.service.records import Actor, Role, SessionRecord
from keyplane.service.validation import clip_user_agent
from keyplane.storage.database import Database
from keyplane.storage.models import ConsoleSession, Membership, Organization, User

#: ``last_seen_at`` is written at most this often (a page view is not a write).
_TOUCH_EVERY: Final = timedelta(minutes=1)
_TOKEN_BYTES: Final = 32
_MAX_TOKEN_LENGTH: Final = 128
#: How long a session waiting for its second factor (or an enrolment) lasts.
PENDING_LIFETIME: Final = timedelta(minutes=10)


class SessionStage:
    ACTIVE: Final = "active"
    SECOND_FACTOR: Final = "second_factor"
    ENROL_FACTOR: Final = "enrol_factor"


_WRONG_CODE: Final = "that code is not right"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class MembershipChoice:
    """One of a user's organizations."""

    organization_id: str
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class DeviceSession:
    """One signed-in browser of a user, as "Your sessions" lists it."""

    id: str
    client_ip: str | None
    user_agent: str | None
    created_at: datetime
    last_seen_at: datetime
    #: When it ends if unused (the idle timeout) or at the latest (its lifetime).
    expires_at: datetime
    method: str
    current: bool


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
        factors: FactorService,
    ) -> None:
        self._database = database
        self._accounts = accounts
        self.throttle = throttle
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.factors = factors

    def sign_in(
        self,
        email: str,
        password: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
        replacing: str | None = None,
    ) -> NewSession:
        """Check the password (throttled) and start a session in the organization the
        user used last (:func:`landing_without_sso`).

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
                if user_id is not None:
                    self._record_failure(user_id, client_ip, user_agent)
                raise AuthenticationFailed("BAD_CREDENTIALS", "wrong e-mail address or password")
        with self._database.write() as session:
            if locked_password_hash(session, user_id) != password_hash:
                # The password changed since it was checked: the one given is not in force.
                self.throttle.failed(email, client_ip)
                raise AuthenticationFailed("BAD_CREDENTIALS", "wrong e-mail address or password")
            organization_id = landing_without_sso(session, user_id)
            if password_hash is not None and self._accounts.needs_rehash(password_hash):
                row = session.scalar(select(User).where(User.id == user_id))
                if row is not None:
                    row.password_hash = self._accounts.hash_password(password)
            return self.start_in(
                session,
                user_id,
                organization_id,
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
        factor_verified: bool = False,
        authenticated_at: datetime | None = None,
    ) -> NewSession:
        """A new session inside the caller's transaction (sign-in, sign-up, joining).

        Its stage is :meth:`stage_for`'s: ``factor_verified`` says a second factor
        (or a passkey) was just checked, or the session this one replaces had one.
        """
        now = self._clock()
        if replacing:
            session.execute(
                delete(ConsoleSession).where(ConsoleSession.token_hash == hash_token(replacing))
            )
        stage = self.stage_for(session, user_id, organization_id, factor_verified=factor_verified)
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        row = ConsoleSession(
            id=new_id("ses"),
            token_hash=hash_token(token),
            user_id=user_id,
            organization_id=organization_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + (self.lifetime if stage == SessionStage.ACTIVE else PENDING_LIFETIME),
            authenticated_at=authenticated_at or now,
            stage=stage,
            method=method,
            client_ip=client_ip,
            user_agent=clip_user_agent(user_agent),
        )
        session.add(row)
        session.execute(
            update(User)
            .where(User.id == user_id)
            .values(last_organization_id=organization_id)
            .execution_options(synchronize_session=False)
        )
        session.flush()
        if stage == SessionStage.ACTIVE:
            record_event(
                session,
                organization_id=organization_id,
                actor=Actor(f"user:{user_id}", client_ip, user_agent),
                action="user.signed_in",
                target_type="user",
                target_id=user_id,
                at=now,
                details={"method": method},
            )
        record = _load(session, row)
        if record is None:  # pragma: no cover - the membership was just checked
            raise AuthenticationFailed("NO_ORGANIZATION", "no membership")
        return NewSession(token, record)

    def stage_for(
        self, session: Session, user_id: str, organization_id: str, *, factor_verified: bool
    ) -> str:
        """The stage of a session of ``user_id`` in ``organization_id``: the one rule.

        A user with a second factor must have used it (``factor_verified``); a user
        without one, in an organization that requires one, may only enrol.
        """
        if has_factor(session, user_id):
            return SessionStage.ACTIVE if factor_verified else SessionStage.SECOND_FACTOR
        required = session.scalar(
            select(Organization.require_mfa).where(Organization.id == organization_id)
        )
        return SessionStage.ENROL_FACTOR if required else SessionStage.ACTIVE

    def resolve(
        self, token: str | None, *, stages: tuple[str, ...] = (SessionStage.ACTIVE,)
    ) -> SessionRecord | None:
        """The live session for a cookie's token, or ``None`` (unknown, expired, idle,
        removed, or in a stage other than ``stages``: by default only active ones)."""
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
            if row.stage not in stages:
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

    def _record_failure(self, user_id: str, client_ip: str | None, user_agent: str | None) -> None:
        """A wrong password for an account that exists goes into its organizations' logs."""
        with self._database.write() as session:
            record_account_event(
                session,
                user_id,
                Actor(f"user:{user_id}", client_ip, user_agent),
                "user.sign_in_failed",
                at=self._clock(),
                details={"reason": "wrong password"},
            )

    # -- organizations ---------------------------------------------------------------

    def organizations(self, user_id: str) -> list[MembershipChoice]:
        """Every organization the user belongs to, by name (the console's switcher)."""
        with self._database.read() as session:
            rows = session.execute(
                select(Organization.id, Organization.name, Membership.role)
                .join(Membership, Membership.organization_id == Organization.id)
                .where(Membership.user_id == user_id)
                .order_by(Organization.name, Organization.pk)
            ).all()
        return [MembershipChoice(id_, name, Role(role)) for id_, name, role in rows]

    def switch(
        self, current: SessionRecord, organization_id: str, *, actor: Actor
    ) -> SessionRecord:
        """Move the session to another organization of the same user (and remember it
        as the one to land in). Not a member there: ObjectNotFound, as for any
        organization one cannot see."""
        if not is_id(organization_id, "org"):
            raise ObjectNotFound("organization", organization_id)
        now = self._clock()
        with self._database.write() as session:
            row = session.scalar(select(ConsoleSession).where(ConsoleSession.id == current.id))
            member = session.scalar(
                select(Membership.pk).where(
                    Membership.user_id == current.user_id,
                    Membership.organization_id == organization_id,
                )
            )
            if row is None or member is None:
                raise ObjectNotFound("organization", organization_id)
            if row.method != "sso" and not password_sign_in_allowed(
                session, current.user_id, organization_id
            ):
                raise SsoRequired()  # its members sign in with SSO: a password session may not
            row.organization_id = organization_id
            # The other organization's policy applies from now on: an active session
            # of a user with a factor used it; one without may have to enrol first.
            row.stage = self.stage_for(
                session, current.user_id, organization_id, factor_verified=True
            )
            if row.stage != SessionStage.ACTIVE:  # a pending stage lasts as long as at sign-in
                row.expires_at = min(row.expires_at, now + PENDING_LIFETIME)
            session.execute(
                update(User)
                .where(User.id == current.user_id)
                .values(last_organization_id=organization_id)
                .execution_options(synchronize_session=False)
            )
            session.flush()
            record_event(
                session,
                organization_id=organization_id,
                actor=actor,
                action="user.switched_organization",
                target_type="user",
                target_id=current.user_id,
                at=now,
                details={"from": current.organization_id},
            )
            record = _load(session, row)
            if record is None:  # pragma: no cover - the membership was just checked
                raise ObjectNotFound("organization", organization_id)
            return record

    # -- a person's sessions ---------------------------------------------------------

    def sessions_of(self, current: SessionRecord) -> list[DeviceSession]:
        """The user's live sessions, this one first, then the most recently seen."""
        now = self._clock()
        with self._database.read() as session:
            rows = session.scalars(
                select(ConsoleSession)
                .where(
                    ConsoleSession.user_id == current.user_id,
                    ConsoleSession.expires_at > now,
                    ConsoleSession.last_seen_at > now - self.idle_timeout,
                )
                .order_by(ConsoleSession.last_seen_at.desc(), ConsoleSession.pk.desc())
            ).all()
            found = [
                DeviceSession(
                    id=row.id,
                    client_ip=row.client_ip,
                    user_agent=row.user_agent,
                    created_at=row.created_at,
                    last_seen_at=row.last_seen_at,
                    expires_at=min(row.expires_at, row.last_seen_at + self.idle_timeout),
                    method=row.method,
                    current=row.id == current.id,
                )
                for row in rows
            ]
        return sorted(found, key=lambda item: not item.current)

    def end_session(self, current: SessionRecord, session_id: str, *, actor: Actor) -> None:
        """Sign out one of the user's own sessions (another user's: ObjectNotFound)."""
        if not is_id(session_id, "ses"):
            raise ObjectNotFound("session", session_id)
        with self._database.write() as session:
            ended = session.execute(
                delete(ConsoleSession).where(
                    ConsoleSession.id == session_id, ConsoleSession.user_id == current.user_id
                )
            )
            if int(getattr(ended, "rowcount", 0) or 0) != 1:
                raise ObjectNotFound("session", session_id)
            record_account_event(
                session,
                current.user_id,
                actor,
                "user.session_ended",
                at=self._clock(),
                details={"session_id": session_id},
            )

    def end_others(self, current: SessionRecord, *, actor: Actor) -> int:
        """Sign out every other session of the user; returns how many ended."""
        with self._database.write() as session:
            ended = session.execute(
                delete(ConsoleSession).where(
                    ConsoleSession.user_id == current.user_id, ConsoleSession.id != current.id
                )
            )
            count = int(getattr(ended, "rowcount", 0) or 0)
            record_account_event(
                session,
                current.user_id,
                actor,
                "user.other_sessions_ended",
                at=self._clock(),
                details={"count": count},
            )
            return count

    def complete_second_factor(
        self,
        token: str | None,
        code: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> NewSession:
        """Finish a ``second_factor`` session with a TOTP code or a recovery code.

        The pending session is deleted and a new active one (a new token) starts.
        A wrong code is counted by the sign-in throttle (per account and IP) and
        audited as ``user.second_factor_failed``; the session stays pending.
        """
        pending = self.resolve(token, stages=(SessionStage.SECOND_FACTOR,))
        if pending is None or token is None:
            raise AuthenticationFailed("NO_PENDING_SESSION", "sign in again")
        code = code if isinstance(code, str) else ""
        actor = Actor(f"user:{pending.user_id}", client_ip, user_agent)
        with self.throttle.attempt(pending.email, client_ip):
            started = self._try_codes(pending, token, code, actor, client_ip, user_agent)
            if started is None:
                self.throttle.failed(pending.email, client_ip)
        if started is None:
            self.record_factor_failure(pending.user_id, actor, "code")
            raise AuthenticationFailed("BAD_CODE", _WRONG_CODE)
        return started

    def _try_codes(
        self,
        pending: SessionRecord,
        token: str,
        code: str,
        actor: Actor,
        client_ip: str | None,
        user_agent: str | None,
    ) -> NewSession | None:
        now = self._clock()
        with self._database.write() as session:
            method = None
            if self.factors.check_totp_in(session, pending.user_id, code, now):
                method = "totp"
            elif self.factors.use_recovery_code_in(session, pending.user_id, code, now, actor):
                method = "recovery_code"
            if method is None:
                return None
            return self.replace_pending(
                session,
                pending,
                token,
                SessionStage.SECOND_FACTOR,
                method=method,
                client_ip=client_ip,
                user_agent=user_agent,
            )

    def replace_pending(
        self,
        session: Session,
        pending: SessionRecord,
        token: str,
        stage: str,
        *,
        method: str,
        client_ip: str | None,
        user_agent: str | None,
    ) -> NewSession:
        """Swap a pending session for a new one (the factor was just used), once:
        the conditional DELETE lets only one of two concurrent completions through."""
        deleted = session.execute(
            delete(ConsoleSession).where(
                ConsoleSession.token_hash == hash_token(token), ConsoleSession.stage == stage
            )
        )
        if int(getattr(deleted, "rowcount", 0) or 0) != 1:
            raise AuthenticationFailed("NO_PENDING_SESSION", "sign in again")
        return self.start_in(
            session,
            pending.user_id,
            pending.organization_id,
            client_ip=client_ip,
            user_agent=user_agent,
            method=method,
            factor_verified=True,
        )

    def finish_enrolment(
        self, token: str | None, *, client_ip: str | None = None, user_agent: str | None = None
    ) -> NewSession:
        """An ``enrol_factor`` session whose user now has a factor becomes active
        (a new token); refused while the user still has none."""
        pending = self.resolve(token, stages=(SessionStage.ENROL_FACTOR,))
        if pending is None or token is None:
            raise AuthenticationFailed("NO_PENDING_SESSION", "sign in again")
        with self._database.write() as session:
            if not has_factor(session, pending.user_id):
                raise StateConflict("set up a second factor first")
            return self.replace_pending(
                session,
                pending,
                token,
                SessionStage.ENROL_FACTOR,
                method=pending.method,
                client_ip=client_ip,
                user_agent=user_agent,
            )

    def record_factor_failure(self, user_id: str, actor: Actor, factor: str) -> None:
        """``user.second_factor_failed`` in the user's organizations (its own transaction:
        the failed attempt changes nothing else)."""
        with self._database.write() as session:
            record_account_event(
                session,
                user_id,
                actor=actor,
                action="user.second_factor_failed",
                at=self._clock(),
                details={"factor": factor},
            )

    def reauthenticate(
        self,
        current: SessionRecord,
        *,
        password: str = "",
        code: str = "",
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Sudo mode: a password (or a TOTP code) entered again moves ``authenticated_at``
        to now. Throttled like sign-in; audited as ``user.reauthenticated``."""
        actor = Actor(f"user:{current.user_id}", client_ip, user_agent)
        password = password if isinstance(password, str) else ""
        code = code if isinstance(code, str) else ""
        with self.throttle.attempt(current.email, client_ip):
            now = self._clock()
            method = "password" if password else "totp"
            ok = False
            if password:
                with self._database.read() as session:
                    stored = session.scalar(
                        select(User.password_hash).where(User.id == current.user_id)
                    )
                ok = self._accounts.verify_password(stored, password)
            with self._database.write() as session:
                if not password and code:
                    ok = self.factors.check_totp_in(session, current.user_id, code, now)
                if ok:
                    touched = session.execute(
                        update(ConsoleSession)
                        .where(
                            ConsoleSession.id == current.id,
                            ConsoleSession.stage == SessionStage.ACTIVE,
                        )
                        .values(authenticated_at=now)
                        .execution_options(synchronize_session=False)
                    )
                    ok = int(getattr(touched, "rowcount", 0) or 0) == 1
                if ok:
                    record_account_event(
                        session,
                        current.user_id,
                        actor=actor,
                        action="user.reauthenticated",
                        at=now,
                        details={"method": method},
                    )
            if not ok:
                self.throttle.failed(current.email, client_ip)
                raise AuthenticationFailed("BAD_CREDENTIALS", "that is not right")

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
            record_account_event(
                session, current.user_id, actor, "user.password_changed", at=self._clock()
            )


def landing_organization(
    session: Session, user_id: str, *, allowed: Callable[[str], bool] = lambda _: True
) -> str | None:
    """Where a sign-in lands: the organization used last if the user still belongs
    to it, else their oldest membership; only organizations ``allowed`` accepts (a
    sign-in method's policy); ``None`` when there is none."""
    last = session.scalar(select(User.last_organization_id).where(User.id == user_id))
    memberships = session.scalars(
        select(Membership.organization_id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.pk)
    ).all()
    ordered = ([last] if last is not None and last in memberships else []) + [
        membership for membership in memberships if membership != last
    ]
    return next((candidate for candidate in ordered if allowed(candidate)), None)


def landing_without_sso(session: Session, user_id: str) -> str:
    """Where a sign-in that is not SSO (a password, a passkey) lands: the organization
    used last among those whose SSO policy lets it in (``sso_policy.py``).

    Raises ``AuthenticationFailed`` (``NO_ORGANIZATION``) for a user in no
    organization, :class:`SsoRequired` when every one of theirs wants SSO."""
    if session.scalar(select(Membership.pk).where(Membership.user_id == user_id).limit(1)) is None:
        raise AuthenticationFailed(
            "NO_ORGANIZATION", "this account belongs to no organization any more"
        )
    organization_id = landing_organization(
        session,
        user_id,
        allowed=lambda candidate: password_sign_in_allowed(session, user_id, candidate),
    )
    if organization_id is None:
        raise SsoRequired()
    return organization_id


def locked_password_hash(session: Session, user_id: str) -> str | None:
    """The user's stored password hash, the row locked until the transaction ends."""
    return session.scalar(
        select(User.password_hash).where(User.id == user_id).with_for_update(key_share=True)
    )


def _load(session: Session, row: ConsoleSession) -> SessionRecord | None:
    found = session.execute(
        select(User.email, Organization.name, Membership.role, User.email_verified_at)
        .join(Membership, Membership.user_id == User.id)
        .join(Organization, Organization.id == Membership.organization_id)
        .where(User.id == row.user_id, Membership.organization_id == row.organization_id)
    ).first()
    if found is None:
        return None
    email, organization_name, role, verified_at = found
    return SessionRecord(
        id=row.id,
        user_id=row.user_id,
        email=email,
        organization_id=row.organization_id,
        organization_name=organization_name,
        role=Role(role),
        created_at=row.created_at,
        expires_at=row.expires_at,
        email_verified=verified_at is not None,
        authenticated_at=row.authenticated_at,
        stage=row.stage,
        method=row.method,
    )


__all__ = [
    "PENDING_LIFETIME",
    "DeviceSession",
    "MembershipChoice",
    "NewSession",
    "SessionService",
    "SessionStage",
    "check_email",
    "hash_token",
]
