"""Mail about events: to the people concerned, unless they muted that type.

The dispatcher calls :class:`MailNotifier` once per event, in the transaction
that marks the event dispatched, so each event is mailed once. The recipients
are the organization's owners and admins and, for an event about a key, the
person who created it (if they are still a member); each may mute a type in
the console (``notification_mutes``). Only the types ``core/events.py`` marks
``mailed`` are mailed. Without ``KEYPLANE_SMTP_URL`` nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from keyplane.core.errors import InvalidInput
from keyplane.core.events import EVENT_TYPES
from keyplane.service.mail.outbox import Outbox
from keyplane.service.records import Caller, Role
from keyplane.storage.database import Database
from keyplane.storage.models import Event, Membership, NotificationMute, Organization, User

#: What the subject line says, by type (the key's hint is added; names never are).
SUBJECTS: Final = {
    "key.revoked": "A key was revoked",
    "key.expiring": "A key expires soon",
    "key.expired": "A key expired",
    "key.unused": "A key has not been used for a while",
    "key.auto_disabled": "An unused key was disabled",
    "key.auto_revoked": "An unused key was revoked",
    "key.leaked": "A key was found in public and revoked",
    "key.quota_warning": "A key used 80% of its quota",
    "key.quota_exhausted": "A key used all of its quota",
    "key.canary_used": "A canary key was used",
    "member.removed": "A member was removed",
    "member.role_changed": "A member's role changed",
    "webhook.endpoint_disabled": "A webhook endpoint was disabled",
    "user.password_changed": "Your password was changed",
    "user.password_reset": "Your password was reset",
    "user.factor_added": "A second factor was added to your account",
    "user.factor_removed": "A second factor was removed from your account",
}
MAILED: Final = tuple(name for name, kind in EVENT_TYPES.items() if kind.mailed)


class MailNotifier:
    def __init__(self, outbox: Outbox, *, console_url: str) -> None:
        self._outbox = outbox
        self._console_url = console_url.rstrip("/")

    def __call__(self, session: Session, event: Event) -> None:
        kind = EVENT_TYPES.get(event.type)
        if kind is None or not kind.mailed or not self._outbox.enabled:
            return
        for email in self.recipients(session, event):
            self._outbox.enqueue(
                session, recipient=email, template="event", context=self._context(session, event)
            )

    def recipients(self, session: Session, event: Event) -> list[str]:
        """The addresses that get ``event``: owners, admins, the key's creator; not muted.
        An event about a person's own account (``user.``) goes to that person alone."""
        data = event.data or {}
        if event.type.startswith("user."):
            return self._account_holder(session, event, str((data.get("user") or {}).get("id")))
        creator = str((data.get("key") or {}).get("created_by") or "")
        creator_id = creator.removeprefix("user:") if creator.startswith("user:") else None
        members = session.execute(
            select(User.id, User.email, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == event.organization_id)
            .order_by(User.email)
        ).all()
        muted = set(
            session.scalars(
                select(NotificationMute.user_id).where(
                    NotificationMute.organization_id == event.organization_id,
                    NotificationMute.event_type == event.type,
                )
            )
        )
        return [
            email
            for user_id, email, role in members
            if user_id not in muted
            and (role in (Role.OWNER.value, Role.ADMIN.value) or user_id == creator_id)
        ]

    @staticmethod
    def _account_holder(session: Session, event: Event, user_id: str) -> list[str]:
        """The person, once: an account event is raised in each of their organizations
        (``record_account_event``), and only the one in the first of them is mailed."""
        first = session.scalar(
            select(Membership.organization_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.organization_id)
            .limit(1)
        )
        if first != event.organization_id:
            return []
        muted = session.scalar(
            select(NotificationMute.user_id).where(
                NotificationMute.user_id == user_id,
                NotificationMute.organization_id == event.organization_id,
                NotificationMute.event_type == event.type,
            )
        )
        email = session.scalar(select(User.email).where(User.id == user_id))
        return [email] if email and muted is None else []

    def _context(self, session: Session, event: Event) -> dict[str, Any]:
        data = event.data or {}
        key = data.get("key") or {}
        organization = session.scalar(
            select(Organization.name).where(Organization.id == event.organization_id)
        )
        subject = SUBJECTS.get(event.type, EVENT_TYPES[event.type].description.rstrip("."))
        if key.get("hint"):
            subject = f"{subject}: {key['hint']}"
        if key.get("id"):
            url = f"{self._console_url}/console/keys/{key['id']}"
        elif event.type.startswith("user."):
            url = f"{self._console_url}/console/account"
        elif event.type.startswith("webhook."):
            url = f"{self._console_url}/console/webhooks"
        else:
            url = f"{self._console_url}/console"
        details = data.get("details") or {}
        return {
            "subject": subject,
            "event_type": event.type,
            "description": EVENT_TYPES[event.type].description,
            "organization": organization or event.organization_id,
            "key": key,
            "details": [(name, _shown(value)) for name, value in sorted(details.items())][:12],
            "occurred_at": event.occurred_at.strftime("%Y-%m-%d %H:%M UTC"),
            "url": url,
            "preferences_url": f"{self._console_url}/console/account/notifications",
            "console_url": self._console_url,
            "personal": event.type.startswith("user."),
        }


def _shown(value: Any) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 200 else text[:199] + "…"


class NotificationPreferences:
    """A person's mail preferences in one organization: the mailed types they muted."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def muted(self, caller: Caller, user_id: str) -> frozenset[str]:
        with self._database.read() as session:
            return frozenset(
                session.scalars(
                    select(NotificationMute.event_type).where(
                        NotificationMute.user_id == user_id,
                        NotificationMute.organization_id == caller.organization_id,
                    )
                )
            )

    def set_muted(self, caller: Caller, user_id: str, muted: Iterable[str]) -> frozenset[str]:
        """Mute exactly ``muted`` (mailed types) for ``user_id`` in the caller's organization."""
        wanted = frozenset(muted)
        unknown = sorted(name for name in wanted if name not in MAILED)
        if unknown:
            raise InvalidInput(f"{unknown[0][:60]!r} is not an event that is mailed", field="muted")
        with self._database.write() as session:
            session.execute(
                delete(NotificationMute).where(
                    NotificationMute.user_id == user_id,
                    NotificationMute.organization_id == caller.organization_id,
                )
            )
            if wanted:  # two saves at once must not collide on the primary key
                dialect: Any = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
                session.execute(
                    dialect.insert(NotificationMute)
                    .values(
                        [
                            {
                                "user_id": user_id,
                                "organization_id": caller.organization_id,
                                "event_type": name,
                            }
                            for name in sorted(wanted)
                        ]
                    )
                    .on_conflict_do_nothing()
                )
        return wanted
