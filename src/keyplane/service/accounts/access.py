"""What a person may do in an organization, by role.

Keys and the operator act through their scopes alone (``Caller.role`` is
``None``). A person signed in to the console acts with a role:

- owner and admin manage every key, project, member and invitation of the
  organization and read the whole audit log (only an owner hands out or takes
  away the owner role, and an organization always keeps one owner);
- a member sees every project and key of the organization, creates keys and
  manages (changes, disables, rolls, revokes) the keys they created, and may not
  put management scopes on a key: otherwise a member could mint a key that
  manages everybody's keys through the REST API.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from keyplane.core import scopes as scope_rules
from keyplane.core.errors import NotPermitted
from keyplane.service.records import Caller, Role

INSUFFICIENT_ROLE: Final = "INSUFFICIENT_ROLE"

#: Scopes a member may not grant: they reach beyond the keys the member created.
MEMBER_UNGRANTABLE: Final = frozenset(
    {
        scope_rules.ALL,
        scope_rules.KEYS_WRITE,
        scope_rules.PROJECTS_WRITE,
        scope_rules.AUDIT_READ,
        scope_rules.WEBHOOKS_READ,
        scope_rules.WEBHOOKS_WRITE,
        scope_rules.POLICIES_WRITE,
        scope_rules.EVENTS_READ,
        "keys:*",
        "projects:*",
        "audit:*",
        "webhooks:*",
        "policies:*",
        "events:*",
    }
)


def is_manager(caller: Caller) -> bool:
    """True for a key or the operator (scopes decide) and for an owner or admin."""
    return caller.role is None or caller.role in (Role.OWNER, Role.ADMIN)


def require_manager(caller: Caller, what: str) -> None:
    if not is_manager(caller):
        raise NotPermitted(INSUFFICIENT_ROLE, f"only an owner or an admin can {what}")


def can_manage_key(caller: Caller, created_by: str) -> bool:
    return is_manager(caller) or created_by == caller.actor.name


def require_key_manager(caller: Caller, created_by: str) -> None:
    if not can_manage_key(caller, created_by):
        raise NotPermitted(INSUFFICIENT_ROLE, "a member can change only the keys they created")


def check_member_scopes(caller: Caller, scopes: Iterable[str]) -> None:
    if caller.role is not Role.MEMBER:
        return
    reserved = sorted(set(scopes) & MEMBER_UNGRANTABLE)
    if reserved:
        raise NotPermitted(
            INSUFFICIENT_ROLE,
            f"a member cannot put management scopes on a key: {', '.join(reserved)}",
        )


def check_role_change(caller: Caller, old: Role | None, new: Role) -> None:
    """Owners and admins change roles; only an owner touches the owner role."""
    require_manager(caller, "change members")
    if Role.OWNER in (old, new) and caller.role not in (None, Role.OWNER):
        raise NotPermitted(INSUFFICIENT_ROLE, "only an owner can grant or remove the owner role")


def require_owner(caller: Caller, what: str) -> None:
    """Owners only (a key or the operator: scopes decide)."""
    if caller.role not in (None, Role.OWNER):
        raise NotPermitted(INSUFFICIENT_ROLE, f"only an owner can {what}")
