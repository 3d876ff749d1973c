"""Invitations: how everyone but an organization's founder joins it.

An owner or admin invites an address with a role; the link carries a random
token of which only the SHA-256 is stored, expires after
:data:`INVITATION_LIFETIME` and works once (a conditional UPDATE claims it).
A link is bound to its address: a new user proves it by the link and chooses a
password; an existing user joins by signing in as that address, never by
setting credentials through the link.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from keyplane.core.errors import NotPermitted, ObjectNotFound, StateConflict
from keyplane.core.ids import is_id, new_id
from keyplane.core.paths import CONSOLE_PREFIX
from keyplane.service.accounts import access
from keyplane.service.accounts.members import find_membership, parse_role
from keyplane.service.accounts.organizations import AccountService, check_email
from keyplane.service.accounts.sessions import NewSession, SessionService, hash_token
from keyplane.service.accounts.sso_policy import check_password_sign_in
from keyplane.service.audit import record_by, record_event
from keyplane.service.mail.outbox import Outbox
from keyplane.service.records import Actor, Caller, InvitationRecord, Role, SessionRecord, record_of
from keyplane.storage.database import Database, WriteConflict
from keyplane.storage.models import Invitation, Membership, Organization, User

INVITATION_LIFETIME: Final = timedelta(days=7)
_MAX_TOKEN_LENGTH: Final = 128
_ACCOUNT_EXISTS: Final = (
    "an account with this address exists: sign in as it, then open the invitation link again"
)


class AccountExists(StateConflict):
    """The invited address has an account: it joins by signing in, not through the link."""


@dataclass(frozen=True, slots=True)
class NewInvitation:
    """An invitation just created; ``token`` goes into the link, shown once."""

    token: str = field(repr=False)
    record: InvitationRecord
    #: True when the link went out by mail (a mail server is configured).
    mailed: bool = False


class InvitationService:
    def __init__(
        self,
        database: Database,
        accounts: AccountService,
        sessions: SessionService,
        *,
        clock: Callable[[], datetime],
        outbox: Outbox | None = None,
        console_url: str = "",
    ) -> None:
        self._database = database
        self._accounts = accounts
        self._sessions = sessions
        self._clock = clock
        self._outbox = outbox
        self._console_url = console_url.rstrip("/")

    def link(self, token: str, base_url: str | None = None) -> str:
        """The link that accepts an invitation (``base_url``: the console's own URL)."""
        base = (base_url or self._console_url).rstrip("/")
        return f"{base}{CONSOLE_PREFIX}/join?" + urlencode({"token": token})

    def invite(self, caller: Caller, email: str, role: Role | str = Role.MEMBER) -> NewInvitation:
        new_role = parse_role(role)
        access.check_role_change(caller, None, new_role)
        email = check_email(email)
        now = self._clock()
        token = secrets.token_urlsafe(32)
        with self._database.write() as session:
            already = session.scalar(
                select(Membership.pk)
                .join(User, User.id == Membership.user_id)
                .where(Membership.organization_id == caller.organization_id, User.email == email)
            )
            if already is not None:
                raise StateConflict(f"{email} is already a member")
            row = Invitation(
                id=new_id("inv"),
                token_hash=hash_token(token),
                organization_id=caller.organization_id,
                email=email,
                role=new_role.value,
                created_at=now,
                created_by=caller.actor.name,
                expires_at=now + INVITATION_LIFETIME,
                accepted_at=None,
                revoked_at=None,
            )
            session.add(row)
            session.flush()
            record_by(
                session,
                caller,
                "invitation.created",
                ("invitation", row.id),
                at=now,
                details={"email": email, "role": new_role.value},
            )
            record = _invitation_record(session, row)
            mailed = (
                self._outbox is not None
                and self._outbox.enqueue(
                    session,
                    recipient=email,
                    template="invitation",
                    context={
                        "email": email,
                        "url": self.link(token),
                        "organization": record.organization_name,
                        "role": new_role.value,
                        "inviter": _inviter(session, caller),
                        "expires_in": f"{INVITATION_LIFETIME.days} days",
                        "console_url": self._console_url,
                    },
                )
                is not None
            )
            return NewInvitation(token, record, mailed=mailed)

    def list_invitations(self, caller: Caller) -> list[InvitationRecord]:
        """Invitations still waiting to be accepted."""
        access.require_manager(caller, "see invitations")
        now = self._clock()
        with self._database.read() as session:
            rows = session.scalars(
                select(Invitation)
                .where(
                    Invitation.organization_id == caller.organization_id,
                    Invitation.accepted_at.is_(None),
                    Invitation.revoked_at.is_(None),
                    Invitation.expires_at > now,
                )
                .order_by(Invitation.pk.desc())
            ).all()
            return [_invitation_record(session, row) for row in rows]

    def revoke_invitation(self, caller: Caller, invitation_id: str) -> None:
        access.require_manager(caller, "revoke invitations")
        now = self._clock()
        with self._database.write() as session:
            row = (
                session.scalar(
                    select(Invitation)
                    .where(
                        Invitation.id == invitation_id,
                        Invitation.organization_id == caller.organization_id,
                    )
                    # Two revocations (or a revocation and an acceptance) wait for each other.
                    .with_for_update(key_share=True)
                    .execution_options(populate_existing=True)
                )
                if is_id(invitation_id, "inv")
                else None
            )
            if row is None:
                raise ObjectNotFound("invitation", invitation_id)
            if row.revoked_at is None and row.accepted_at is None:
                row.revoked_at = now
                record_by(
                    session,
                    caller,
                    "invitation.revoked",
                    ("invitation", row.id),
                    at=now,
                    details={"email": row.email},
                )

    def find_invitation(self, token: str) -> InvitationRecord:
        """The open invitation behind a link's token, or :class:`ObjectNotFound`."""
        with self._database.read() as session:
            return _invitation_record(session, self._open_invitation(session, token))

    def accept_new_account(
        self,
        token: str,
        password: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
        replacing: str | None = None,
    ) -> NewSession:
        """Join with a new account for the invited address, choosing its password.

        A link never sets or changes the credentials of an account that exists
        (with or without a password): whoever holds the link is not thereby that
        person. Such an account joins with :meth:`accept_signed_in`.
        """
        new_hash = self._accounts.hash_password(password)
        now = self._clock()
        try:
            with self._database.write() as session:
                row = self._claim(session, token, now)
                if session.scalar(select(User.pk).where(User.email == row.email)) is not None:
                    raise AccountExists(_ACCOUNT_EXISTS)
                user = User(
                    id=new_id("usr"), email=row.email, created_at=now, password_hash=new_hash
                )
                session.add(user)
                session.flush()
                return self._join(session, row, user.id, now, (client_ip, user_agent, replacing))
        except WriteConflict:  # a concurrent sign-up or accept created the address
            raise AccountExists(_ACCOUNT_EXISTS) from None

    def accept_signed_in(
        self,
        token: str,
        current: SessionRecord,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
        replacing: str | None = None,
    ) -> NewSession:
        """Join as the signed-in user, who must be the invited address (a link is
        bound to its address: it adds no one else)."""
        now = self._clock()
        try:
            with self._database.write() as session:
                row = self._claim(session, token, now)
                email = session.scalar(select(User.email).where(User.id == current.user_id))
                if email is None or email != row.email:
                    raise NotPermitted(
                        "WRONG_ACCOUNT",
                        f"this invitation is for {row.email}; "
                        "sign out, then sign in as that address",
                    )
                client = (client_ip, user_agent, replacing)
                return self._join(session, row, current.user_id, now, client, current=current)
        except WriteConflict:  # joined the same organization through another link just now
            raise StateConflict("you are already a member of this organization") from None

    def _claim(self, session: Session, token: str, now: datetime) -> Invitation:
        """Mark the open invitation accepted, once: the conditional UPDATE is the
        single-use rule. A second accept of the same link waits for the first
        one's row lock (PostgreSQL) or write lock (SQLite), then matches no row."""
        row = self._open_invitation(session, token)
        claimed = session.execute(
            update(Invitation)
            .where(
                Invitation.pk == row.pk,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > now,
            )
            .values(accepted_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise ObjectNotFound("invitation", "that link")
        session.refresh(row)
        return row

    def _join(
        self,
        session: Session,
        row: Invitation,
        user_id: str,
        now: datetime,
        client: tuple[str | None, str | None, str | None],
        *,
        current: SessionRecord | None = None,
    ) -> NewSession:
        """Add the membership and start a session in the organization. A new account
        (``current`` None) and a session not started by SSO obey the organization's
        SSO policy; a signed-in person's new session keeps how the old one began,
        its second factor and its authentication time."""
        client_ip, user_agent, replacing = client
        # The link reached the invited address's mailbox: that proves the address.
        session.execute(
            update(User)
            .where(User.id == user_id, User.email == row.email, User.email_verified_at.is_(None))
            .values(email_verified_at=now)
            .execution_options(synchronize_session=False)
        )
        if find_membership(session, row.organization_id, user_id) is None:
            session.add(
                Membership(
                    organization_id=row.organization_id,
                    user_id=user_id,
                    role=row.role,
                    created_at=now,
                )
            )
        record_event(
            session,
            organization_id=row.organization_id,
            actor=Actor(f"user:{user_id}", client_ip, user_agent),
            action="member.added",
            target_type="user",
            target_id=user_id,
            at=now,
            details={"email": row.email, "role": row.role, "invitation_id": row.id},
        )
        session.flush()
        if current is None or current.method != "sso":
            check_password_sign_in(session, user_id, row.organization_id)
        return self._sessions.start_in(
            session,
            user_id,
            row.organization_id,
            client_ip=client_ip,
            user_agent=user_agent,
            replacing=replacing,
            method=current.method if current is not None else "invitation",
            factor_verified=current is not None,
            authenticated_at=current.authenticated_at if current is not None else None,
        )

    def _open_invitation(self, session: Session, token: str) -> Invitation:
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
            raise ObjectNotFound("invitation", "that link")
        row = session.scalar(select(Invitation).where(Invitation.token_hash == hash_token(token)))
        if (
            row is None
            or row.accepted_at is not None
            or row.revoked_at is not None
            or row.expires_at <= self._clock()
        ):
            raise ObjectNotFound("invitation", "that link")
        return row


def _inviter(session: Session, caller: Caller) -> str:
    """Who invited, in words for the mail: a person's address, else the key or operator."""
    kind, _, identity = caller.actor.name.partition(":")
    if kind == "user":
        email = session.scalar(select(User.email).where(User.id == identity))
        if email:
            return email
    return "An administrator" if kind != "key" else "An API key of the organization"


def _invitation_record(session: Session, row: Invitation) -> InvitationRecord:
    name = session.scalar(select(Organization.name).where(Organization.id == row.organization_id))
    return record_of(InvitationRecord, row, organization_name=name or "", role=Role(row.role))
