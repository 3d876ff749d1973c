"""Organizations, their people's passwords, and the operator's look-ups."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from keyplane.core import scopes as scope_rules
from keyplane.core.errors import InvalidInput, ObjectNotFound, StateConflict
from keyplane.core.ids import new_id
from keyplane.service.accounts.projects import project_record
from keyplane.service.audit import record_event
from keyplane.service.records import (
    Actor,
    Caller,
    OrganizationRecord,
    ProjectRecord,
    Role,
    UserRecord,
)
from keyplane.service.validation import check_name
from keyplane.storage.database import Database
from keyplane.storage.models import ConsoleSession, Membership, Organization, Project, User

#: No whitespace or control characters (a NUL would reach the database as a DataError).
_EMAIL_RE: Final = re.compile(
    r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+"
)
MIN_PASSWORD_LENGTH: Final = 10
#: argon2 hashes any length, but a megabyte password is only a way to burn CPU.
MAX_PASSWORD_LENGTH: Final = 1024


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    organization: OrganizationRecord
    owner: UserRecord
    project: ProjectRecord


class AccountService:
    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime],
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._hasher = password_hasher or PasswordHasher()
        self._dummy: str | None = None

    def bootstrap(
        self,
        session: Session,
        *,
        organization_name: str,
        project_name: str,
        owner_email: str,
        owner_password: str | None = None,
        actor: Actor,
        unique_name: bool = True,
    ) -> Bootstrapped:
        """Create an organization, its owner (or reuse the user) and a first project.

        An existing user's password is never replaced here (that is
        :meth:`set_password`'s job, for the operator). ``unique_name`` refuses a
        name another organization has: the operator names organizations in the
        admin commands; sign-up passes ``False`` so a name reveals nothing.
        """
        now = self._clock()
        organization_name = check_name(organization_name)
        project_name = check_name(project_name)
        email = check_email(owner_email)
        if unique_name and session.scalar(
            select(Organization.pk).where(Organization.name == organization_name)
        ):
            raise StateConflict(f"an organization named {organization_name!r} already exists")
        organization = Organization(id=new_id("org"), name=organization_name, created_at=now)
        session.add(organization)
        user = session.scalar(select(User).where(User.email == email))
        if user is None:
            user = User(id=new_id("usr"), email=email, created_at=now, password_hash=None)
            session.add(user)
        if owner_password is not None:
            if user.password_hash is not None:
                raise StateConflict(
                    f"{email} already has a console password; leave the password out "
                    "(theirs stays) or change it with keyplane admin set-password"
                )
            user.password_hash = self.hash_password(owner_password)
        session.flush()
        session.add(
            Membership(
                organization_id=organization.id, user_id=user.id, role=Role.OWNER, created_at=now
            )
        )
        project = Project(
            id=new_id("prj"),
            organization_id=organization.id,
            name=project_name,
            created_at=now,
            created_by=actor.name,
        )
        session.add(project)
        session.flush()
        for action, target_type, target_id, details in (
            ("organization.created", "organization", organization.id, {"name": organization.name}),
            ("member.added", "user", user.id, {"email": email, "role": Role.OWNER.value}),
            ("project.created", "project", project.id, {"name": project.name}),
        ):
            record_event(
                session,
                organization_id=organization.id,
                actor=actor,
                action=action,
                target_type=target_type,
                target_id=target_id,
                at=now,
                details=details,
            )
        return Bootstrapped(
            OrganizationRecord(organization.id, organization.name, organization.created_at),
            UserRecord(user.id, user.email, user.created_at),
            project_record(project),
        )

    def hash_password(self, password: str) -> str:
        return self._hasher.hash(check_password(password))

    def has_password(self, email: str) -> bool | None:
        """Whether the user with ``email`` can sign in; ``None`` when there is no such user."""
        with self._database.read() as session:
            found = session.execute(
                select(User.password_hash).where(User.email == check_email(email))
            ).first()
        return None if found is None else found.password_hash is not None

    def set_password(self, email: str, password: str) -> UserRecord:
        """The operator sets a user's console password (``keyplane admin set-password``)
        and ends that user's console sessions, as a password change does."""
        email = check_email(email)
        new_hash = self.hash_password(password)
        now = self._clock()
        with self._database.write() as session:
            user = session.scalar(select(User).where(User.email == email))
            if user is None:
                raise ObjectNotFound("user", email)
            user.password_hash = new_hash
            session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
            organizations = session.scalars(
                select(Membership.organization_id).where(Membership.user_id == user.id)
            ).all()
            for organization_id in organizations:
                record_event(
                    session,
                    organization_id=organization_id,
                    actor=Actor.operator(),
                    action="user.password_changed",
                    target_type="user",
                    target_id=user.id,
                    at=now,
                )
            return UserRecord(user.id, user.email, user.created_at)

    def verify_password(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; always spends one hash, so a missing user
        or a user without a password costs as long as a wrong password."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash(), password) and (
                password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    # -- operator look-ups (admin CLI) ---------------------------------------

    def operator_caller(self, organization: str) -> Caller:
        """A caller acting for the operator in ``organization`` (id or name), with every scope."""
        with self._database.read() as session:
            rows = session.scalars(
                select(Organization)
                .where((Organization.id == organization) | (Organization.name == organization))
                .limit(3)
            ).all()
            by_id = [row for row in rows if row.id == organization]
            rows = by_id or rows
            if not rows:
                raise ObjectNotFound("organization", organization)
            if len(rows) > 1:  # sign-up does not keep names unique
                raise StateConflict(
                    f"several organizations are named {organization!r}; give the id (org_...)"
                )
            return Caller(rows[0].id, (scope_rules.ALL,), Actor.operator())


def check_password(password: str) -> str:
    """``password`` if its length is allowed, else :class:`InvalidInput` (the same for
    everyone, before any look-up, so the answer says nothing about the account)."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"a password has at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters", field="password"
        )
    return password


def check_email(email: str) -> str:
    email = email.strip().lower() if isinstance(email, str) else ""
    if len(email) > 320 or not _EMAIL_RE.fullmatch(email):
        raise InvalidInput(f"{email!r} is not an email address", field="email")
    return email
