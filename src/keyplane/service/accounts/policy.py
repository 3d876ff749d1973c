"""An organization's security settings: "members must use a second factor".

Owners change it, in sudo mode; turning it on needs the owner to have a factor
(so they do not lock themselves into enrolment) and ends the sessions, in this
organization, of members who have none: their next sign-in may only enrol. The
rule that applies the policy at sign-in is ``SessionService.stage_for``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from keyplane.core.errors import NotPermitted, ObjectNotFound, StateConflict
from keyplane.service.accounts import access
from keyplane.service.accounts.factors import has_factor
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import record_by
from keyplane.service.records import Caller, Role
from keyplane.storage.database import Database
from keyplane.storage.models import ConsoleSession, Membership, Organization

_USER_ACTOR = "user:"


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    require_mfa: bool


class PolicyService:
    def __init__(
        self, database: Database, *, clock: Callable[[], datetime], sudo: SudoRule
    ) -> None:
        self._database = database
        self._clock = clock
        self.sudo = sudo

    def settings(self, caller: Caller) -> SecuritySettings:
        with self._database.read() as session:
            required = session.scalar(
                select(Organization.require_mfa).where(Organization.id == caller.organization_id)
            )
            if required is None:
                raise ObjectNotFound("organization", caller.organization_id)
            return SecuritySettings(require_mfa=bool(required))

    def set_require_mfa(self, caller: Caller, required: bool) -> SecuritySettings:
        access.require_owner(caller, "change the organization's security settings")
        self.sudo.require(caller, "change the organization's security settings")
        now = self._clock()
        with self._database.write() as session:
            organization = session.scalar(
                select(Organization)
                .where(Organization.id == caller.organization_id)
                .with_for_update(key_share=True)
            )
            if organization is None:
                raise ObjectNotFound("organization", caller.organization_id)
            user_id = caller.actor.name.removeprefix(_USER_ACTOR)
            if caller.role is not None:
                role = session.scalar(
                    select(Membership.role).where(
                        Membership.organization_id == caller.organization_id,
                        Membership.user_id == user_id,
                    )
                )
                if role != Role.OWNER.value:
                    raise NotPermitted(
                        access.INSUFFICIENT_ROLE,
                        "only an owner can change the organization's security settings",
                    )
                if required and not has_factor(session, user_id):
                    raise StateConflict(
                        "set up a second factor for yourself before requiring one of everyone"
                    )
            before = bool(organization.require_mfa)
            if before == required:
                return SecuritySettings(require_mfa=required)
            organization.require_mfa = required
            if required:
                members = session.scalars(
                    select(Membership.user_id).where(
                        Membership.organization_id == caller.organization_id
                    )
                ).all()
                without = [member for member in members if not has_factor(session, member)]
                if without:
                    session.execute(
                        delete(ConsoleSession).where(
                            ConsoleSession.organization_id == caller.organization_id,
                            ConsoleSession.user_id.in_(without),
                        )
                    )
            record_by(
                session,
                caller,
                "organization.mfa_policy_changed",
                ("organization", caller.organization_id),
                at=now,
                details={"from": before, "to": required},
            )
            return SecuritySettings(require_mfa=required)


__all__ = ["PolicyService", "SecuritySettings"]
