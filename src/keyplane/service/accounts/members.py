"""People in an organization: sign-up, roles, removal (joining is :mod:`.invitations`).

Sign-up follows the operator's policy (``KEYPLANE_SIGNUP``): ``first`` lets
only the first user of a fresh server create an organization; ``open`` lets
anyone create their own; ``off`` lets nobody (the operator bootstraps with
``keyplane admin bootstrap``). Everyone else joins through an invitation link
an owner or admin creates; only the SHA-256 of the link's token is stored.

An organization always has an owner. Every change to its memberships (a role
change, a removal) first locks the organization's row (``SELECT ... FOR NO KEY
UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serializes writers), then
re-reads the acting person's own role and counts the owners: two owners
demoting or removing each other at once are serialized, and the second finds
itself no longer an owner (403) or the last one standing (409). Under the
``first`` policy a sign-up holds a lock on the organizations table while it
checks that there is none yet, so two first sign-ups cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from keyplane.core.errors import (
    AuthenticationFailed,
    InvalidInput,
    NotPermitted,
    ObjectNotFound,
    StateConflict,
)
from keyplane.core.ids import is_id
from keyplane.service.accounts import access
from keyplane.service.accounts.email_links import VERIFY_EMAIL, EmailLinks
from keyplane.service.accounts.organizations import AccountService, check_email, check_password
from keyplane.service.accounts.sessions import (
    NewSession,
    SessionService,
    locked_password_hash,
)
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import record_by
from keyplane.service.records import (
    Actor,
    Caller,
    MemberRecord,
    Role,
    SessionRecord,
)
from keyplane.service.validation import check_name
from keyplane.storage.database import Database, WriteConflict
from keyplane.storage.models import (
    ConsoleSession,
    Membership,
    Organization,
    User,
)

FIRST_PROJECT_NAME: Final = "Default"
_SIGNUP_CLOSED: Final = "sign-up is closed on this server; ask an owner or admin for an invitation"
_USER_ACTOR: Final = "user:"


class SignupPolicy(StrEnum):
    FIRST = "first"
    OPEN = "open"
    OFF = "off"


class SignupClosed(StateConflict):
    """Sign-up is not open on this server; join through an invitation."""


class MemberService:
    def __init__(
        self,
        database: Database,
        accounts: AccountService,
        sessions: SessionService,
        *,
        policy: SignupPolicy,
        clock: Callable[[], datetime],
        email_links: EmailLinks | None = None,
        sudo: SudoRule | None = None,
    ) -> None:
        self._database = database
        self._accounts = accounts
        self._sessions = sessions
        self.policy = policy
        self._clock = clock
        self._email_links = email_links
        #: Changing a role and removing a member need a recent sign-in (sudo mode).
        self.sudo = sudo or SudoRule(clock)

    # -- sign-up -------------------------------------------------------------

    def signup_open(self) -> bool:
        if self.policy is SignupPolicy.OPEN:
            return True
        if self.policy is SignupPolicy.OFF:
            return False
        with self._database.read() as session:
            return session.scalar(select(Organization.pk).limit(1)) is None

    def sign_up(
        self,
        *,
        email: str,
        password: str,
        organization_name: str,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> NewSession:
        """Create an organization with this person as its owner, and sign them in.

        The answer does not say whether the address has an account: for one that
        has, sign-up is a sign-in (its throttle, its one "wrong e-mail address or
        password" answer) that then creates the organization for that account;
        it never sets a password on it. Organization names are not unique, so a
        name taken elsewhere says nothing either. Closed sign-up is refused before
        any account is looked at, so its one answer says nothing of addresses.
        """
        email = check_email(email)
        check_password(password)
        if not self.signup_open():  # checked again, under a lock, when writing
            raise SignupClosed(_SIGNUP_CLOSED)
        self._sessions.throttle.check(email, client_ip)
        with self._database.read() as session:
            existing = session.execute(
                select(User.id, User.password_hash).where(User.email == email)
            ).first()
        new_hash: str | None = None
        if existing is None:
            new_hash = self._accounts.hash_password(password)
        elif not self._accounts.verify_password(existing.password_hash, password):
            self._sessions.throttle.failed(email, client_ip)
            raise AuthenticationFailed("BAD_CREDENTIALS", "wrong e-mail address or password")
        actor = Actor("signup", client_ip, user_agent)
        try:
            with self._database.write() as session:
                self._check_signup_open(session)
                user = session.scalar(select(User).where(User.email == email))
                if (user is None) != (existing is None):  # created or deleted since the check
                    raise StateConflict("that e-mail address changed just now; try again")
                # The password checked must still be the one in force (as at sign-in):
                # a concurrent change would otherwise let the old one add an organization.
                if existing is not None and (
                    locked_password_hash(session, existing.id) != existing.password_hash
                ):
                    raise StateConflict("that account's password changed just now; try again")
                created = self._accounts.bootstrap(
                    session,
                    organization_name=organization_name,
                    project_name=FIRST_PROJECT_NAME,
                    owner_email=email,
                    actor=actor,
                    unique_name=False,
                )
                if new_hash is not None:
                    row = session.scalar(select(User).where(User.id == created.owner.id))
                    if row is None:  # pragma: no cover - bootstrap just created it
                        raise ObjectNotFound("user", created.owner.id)
                    row.password_hash = new_hash
                    if self._email_links is not None and self._email_links.mail_enabled:
                        # A new account proves its address by the link in this mail.
                        self._email_links.issue(
                            session, created.owner.id, created.owner.email, VERIFY_EMAIL
                        )
                return self._sessions.start_in(
                    session,
                    created.owner.id,
                    created.organization.id,
                    client_ip=client_ip,
                    user_agent=user_agent,
                )
        except WriteConflict:  # a concurrent sign-up or accept took the e-mail address
            raise StateConflict("that e-mail address changed just now; try again") from None

    def create_organization(self, current: SessionRecord, name: str, *, actor: Actor) -> str:
        """A signed-in person founds another organization (when sign-up is open: the
        same rule decides who may create one); returns its id. The session stays
        where it is: the console switches to it next."""
        check_name(name)
        if self.policy is not SignupPolicy.OPEN:
            raise SignupClosed("creating organizations is closed on this server")
        with self._database.write() as session:
            email = session.scalar(select(User.email).where(User.id == current.user_id))
            if email is None:
                raise ObjectNotFound("user", current.user_id)
            created = self._accounts.bootstrap(
                session,
                organization_name=name,
                project_name=FIRST_PROJECT_NAME,
                owner_email=email,
                actor=actor,
                unique_name=False,
            )
            return created.organization.id

    def sign_up_by_mail(
        self,
        *,
        email: str,
        password: str,
        organization_name: str,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Sign-up when the server sends mail: the answer is the same whether or not
        the address has an account, and signs no one in.

        A new address gets its account and organization, and a link that verifies
        it; the person signs in with their password (the banner asks them to
        verify until they do). An address that has an account gets a mail saying
        so (sign in, or reset the password), and nothing of it changes: the
        password typed here is never checked or set. Both cost one password hash.
        """
        email = check_email(email)
        check_name(organization_name)
        new_hash = self._accounts.hash_password(password)
        if not self.signup_open():
            raise SignupClosed(_SIGNUP_CLOSED)
        links = self._email_links
        if links is None:  # pragma: no cover - Services always wires the links
            raise SignupClosed(_SIGNUP_CLOSED)
        with self._sessions.throttle.attempt(f"signup:{email}", client_ip):
            self._sessions.throttle.failed(f"signup:{email}", client_ip)  # every one counts
            actor = Actor("signup", client_ip, user_agent)
            try:
                with self._database.write() as session:
                    self._check_signup_open(session)
                    user = session.scalar(select(User).where(User.email == email))
                    if user is not None:
                        links.notify(session, email, "account_exists")
                        return
                    created = self._accounts.bootstrap(
                        session,
                        organization_name=organization_name,
                        project_name=FIRST_PROJECT_NAME,
                        owner_email=email,
                        actor=actor,
                        unique_name=False,
                    )
                    row = session.scalar(select(User).where(User.id == created.owner.id))
                    if row is None:  # pragma: no cover - bootstrap just created it
                        raise ObjectNotFound("user", created.owner.id)
                    row.password_hash = new_hash
                    links.issue(session, row.id, email, VERIFY_EMAIL)
            except WriteConflict:  # a concurrent sign-up took the address: it has one now
                with self._database.write() as session:
                    links.notify(session, email, "account_exists")

    def _check_signup_open(self, session: Session) -> None:
        """Sign-up is still open, checked inside the writing transaction (see
        :meth:`_an_organization_exists` for the lock under the ``first`` policy)."""
        if self.policy is SignupPolicy.OFF or (
            self.policy is SignupPolicy.FIRST and self._an_organization_exists(session)
        ):
            raise SignupClosed(_SIGNUP_CLOSED)

    def _an_organization_exists(self, session: Session) -> bool:
        """True once any organization exists, checked so that two sign-ups cannot both
        see none: while there is none, the check holds a lock that makes a concurrent
        sign-up wait until this transaction ends, and then see its organization."""
        if session.scalar(select(Organization.pk).limit(1)) is not None:
            return True  # the usual answer, without a lock
        if not self._database.is_sqlite:  # SQLite: BEGIN IMMEDIATE already holds the lock
            # Blocks inserts into organizations (and this same lock), not reads, nor
            # the foreign-key checks of other tables.
            session.execute(text("LOCK TABLE organizations IN SHARE ROW EXCLUSIVE MODE"))
        return session.scalar(select(Organization.pk).limit(1)) is not None

    # -- members -------------------------------------------------------------

    def list_members(self, caller: Caller) -> list[MemberRecord]:
        with self._database.read() as session:
            rows = session.execute(
                select(User.id, User.email, Membership.role, Membership.created_at)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.organization_id == caller.organization_id)
                .order_by(Membership.pk)
            ).all()
        return [MemberRecord(user_id, email, Role(role), at) for user_id, email, role, at in rows]

    def change_role(self, caller: Caller, user_id: str, role: Role | str) -> MemberRecord:
        new = parse_role(role)
        self.sudo.require(caller, "change a member's role")
        now = self._clock()
        with self._database.write() as session:
            caller = _lock_organization(session, caller)
            membership = _membership(session, caller.organization_id, user_id)
            old = Role(membership.role)
            access.check_role_change(caller, old, new)
            if old is Role.OWNER and new is not Role.OWNER:
                _keep_an_owner(session, caller.organization_id)
            if old is not new:
                membership.role = new.value
                record_by(
                    session,
                    caller,
                    "member.role_changed",
                    ("user", user_id),
                    at=now,
                    details={"from": old.value, "to": new.value},
                )
            email = session.scalar(select(User.email).where(User.id == user_id)) or ""
            return MemberRecord(user_id, email, new, membership.created_at)

    def remove(self, caller: Caller, user_id: str) -> None:
        """Take a person out of the organization and end their sessions in it."""
        self.sudo.require(caller, "remove a member")
        now = self._clock()
        with self._database.write() as session:
            caller = _lock_organization(session, caller)
            membership = _membership(session, caller.organization_id, user_id)
            old = Role(membership.role)
            access.check_role_change(caller, old, Role.MEMBER)
            if old is Role.OWNER:
                _keep_an_owner(session, caller.organization_id)
            session.delete(membership)
            session.execute(
                delete(ConsoleSession).where(
                    ConsoleSession.user_id == user_id,
                    ConsoleSession.organization_id == caller.organization_id,
                )
            )
            email = session.scalar(select(User.email).where(User.id == user_id))
            record_by(
                session,
                caller,
                "member.removed",
                ("user", user_id),
                at=now,
                details={"email": email, "role": old.value},
            )


def parse_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInput("a role is owner, admin or member", field="role") from None


def find_membership(session: Session, organization_id: str, user_id: str) -> Membership | None:
    return session.scalar(
        select(Membership).where(
            Membership.organization_id == organization_id, Membership.user_id == user_id
        )
    )


def _membership(session: Session, organization_id: str, user_id: str) -> Membership:
    found = find_membership(session, organization_id, user_id) if is_id(user_id, "usr") else None
    if found is None:
        raise ObjectNotFound("member", user_id)
    return found


def _lock_organization(session: Session, caller: Caller) -> Caller:
    """Lock the caller's organization until the transaction ends; the caller as it is now.

    Every transaction that changes who is an owner takes this lock first, so the
    owner count it reads cannot change before it commits. A person's role was read
    when their request began; it is read again under the lock, so a person demoted
    or removed a moment ago acts with the role they have now (or not at all).
    """
    session.execute(
        select(Organization.pk)
        .where(Organization.id == caller.organization_id)
        .with_for_update(key_share=True)
    )
    if caller.role is None or not caller.actor.name.startswith(_USER_ACTOR):
        return caller  # a key or the operator: its scopes decide, not a membership
    role = session.scalar(
        select(Membership.role).where(
            Membership.organization_id == caller.organization_id,
            Membership.user_id == caller.actor.name.removeprefix(_USER_ACTOR),
        )
    )
    if role is None:
        raise NotPermitted(
            access.INSUFFICIENT_ROLE, "you are no longer a member of this organization"
        )
    return replace(caller, role=Role(role))


def _keep_an_owner(session: Session, organization_id: str) -> None:
    owners = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.organization_id == organization_id, Membership.role == Role.OWNER.value)
    )
    if (owners or 0) <= 1:
        raise StateConflict(
            "an organization keeps at least one owner; make someone else owner first"
        )
