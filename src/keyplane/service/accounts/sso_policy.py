"""The one rule of "members must sign in with SSO" (``Organization.require_sso``).

Every way in that proves who someone is with a password (the sign-in form, a
password reset, switching organization in a password session) asks
:func:`password_sign_in_allowed` for the organization it is about to open. The
rule holds while the organization's SSO connection is enabled: a disabled or
removed connection never locks members out. Owners keep their password as the
break-glass way in (a provider that is down, or misconfigured, must not lock
everyone out of the settings that fix it); see docs/security.md.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyplane.core.errors import NotPermitted
from keyplane.service.records import Role
from keyplane.storage.models import Membership, Organization, SsoConnection

SSO_REQUIRED: Final = "SSO_REQUIRED"
SSO_REQUIRED_MESSAGE: Final = (
    "your organization requires single sign-on: use Sign in with SSO with your work e-mail address"
)


class SsoRequired(NotPermitted):
    """A password may not open this organization: its members sign in with SSO."""

    def __init__(self) -> None:
        super().__init__(SSO_REQUIRED, SSO_REQUIRED_MESSAGE)


def password_sign_in_allowed(session: Session, user_id: str, organization_id: str) -> bool:
    """Whether a password (not SSO) may start a session for ``user_id`` in
    ``organization_id``: False only for a non-owner member of an organization that
    requires SSO and has an enabled connection. The one place this rule lives."""
    found = session.execute(
        select(Organization.require_sso, Membership.role, SsoConnection.enabled)
        .join(Membership, Membership.organization_id == Organization.id)
        .outerjoin(SsoConnection, SsoConnection.organization_id == Organization.id)
        .where(Organization.id == organization_id, Membership.user_id == user_id)
    ).first()
    if found is None:
        return True  # not a member: membership checks refuse it elsewhere
    require_sso, role, enabled = found
    return not (require_sso and enabled and role != Role.OWNER.value)


def check_password_sign_in(session: Session, user_id: str, organization_id: str) -> None:
    """:func:`password_sign_in_allowed`, raising :class:`SsoRequired` when not."""
    if not password_sign_in_allowed(session, user_id, organization_id):
        raise SsoRequired()
