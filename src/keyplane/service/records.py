"""What the service layer hands to the faces: plain frozen values, no ORM objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from keyplane.core.grant import KeyStatus
from keyplane.core.keys import SecretKey
from keyplane.core.network import IPAddress

T = TypeVar("T")


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change and from where: written into every audit event."""

    #: ``key:key_...``, ``user:usr_...`` or ``operator`` (the admin CLI).
    name: str
    client_ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def operator(cls) -> Actor:
        return cls("operator")


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the organization it acts in and the scopes it holds."""

    organization_id: str
    scopes: tuple[str, ...]
    actor: Actor
    #: The member's role when a person acts (the console); ``None`` for a key or
    #: the operator, whose scopes alone decide. See ``service/access.py``.
    role: Role | None = None
    #: When the person last entered a password or a factor (sudo mode,
    #: ``service/accounts/sudo.py``); ``None`` for a key or the operator.
    authenticated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    hint: str
    organization_id: str
    project_id: str
    status: KeyStatus
    enabled: bool
    scopes: tuple[str, ...]
    ip_allowlist: tuple[str, ...]
    metadata: Mapping[str, Any]
    created_at: datetime
    created_by: str
    updated_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rolled_from_id: str | None
    last_used_at: datetime | None
    last_used_ip: str | None
    last_used_user_agent: str | None
    rate_limit: RateLimit | None = None
    quota: QuotaStatus | None = None
    #: Refused like an unknown key; a use raises ``key.canary_used``.
    canary: bool = False
    #: ``stale`` when the stale-key policy disabled the key (service/events/policies.py).
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` requests per ``window_seconds``."""

    limit: int
    window_seconds: int = 60


@dataclass(frozen=True, slots=True)
class Quota:
    """At most ``limit`` uses; ``refill`` ("day", "month") starts a new count each period."""

    limit: int
    refill: str | None = None


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """A key's quota and how much of it is used in the current period."""

    limit: int
    refill: str | None
    used: int
    remaining: int
    resets_at: datetime | None


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """Verifications of one key in one hour or day, by outcome (a grant code)."""

    start: datetime
    outcomes: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key and, once only, its value."""

    record: KeyRecord
    secret: SecretKey


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    id: str
    name: str
    organization_id: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class OrganizationRecord:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    email: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MemberRecord:
    user_id: str
    email: str
    role: Role
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    id: str
    organization_id: str
    organization_name: str
    email: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A signed-in browser: who, in which organization, with which role (read fresh)."""

    id: str
    user_id: str
    email: str
    organization_id: str
    organization_name: str
    role: Role
    created_at: datetime
    expires_at: datetime
    #: True once the person proved they read mail at ``email``.
    email_verified: bool = False
    #: When a password, a factor or a passkey was last entered in this session.
    authenticated_at: datetime | None = None
    #: ``active``; ``second_factor`` (password right, factor still due) or
    #: ``enrol_factor`` (the organization requires a factor the user has not set up)
    #: reach only the pages of that step (``SessionStage``).
    stage: str = "active"
    #: How the session was started: ``password``, ``totp``, ``recovery_code``, ``passkey``.
    method: str = "password"

    @property
    def is_active(self) -> bool:
        return self.stage == "active"

    def caller(self, client_ip: str | None = None, user_agent: str | None = None) -> Caller:
        """The caller this person acts as: every scope, limited by the role's rules."""
        return Caller(
            self.organization_id,
            ("*",),
            Actor(f"user:{self.user_id}", client_ip, user_agent),
            role=self.role,
            authenticated_at=self.authenticated_at,
        )


@dataclass(frozen=True, slots=True)
class AuditEventRecord:
    id: str
    organization_id: str
    actor: str
    action: str
    target_type: str
    target_id: str
    client_ip: str | None
    user_agent: str | None
    occurred_at: datetime
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Usage:
    """One use of a key, as the usage buffer keeps it."""

    at: datetime
    client_ip: IPAddress | None
    user_agent: str | None


R = TypeVar("R")


def record_of(record: type[R], row: object, **values: Any) -> R:
    """A ``record`` (one of the dataclasses above) built from a storage ``row``: each
    field not in ``values`` is the row's attribute of the same name. The records'
    fields are then named once, in their dataclass, and a field the row lacks is
    an ``AttributeError`` in the tests, not a silent copy left behind."""
    given = {
        field.name: getattr(row, field.name)
        for field in dataclasses.fields(record)  # type: ignore[arg-type]
        if field.name not in values
    }
    return record(**given, **values)
