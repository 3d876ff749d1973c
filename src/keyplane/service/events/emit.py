"""Raising an event: one row in ``events``, in the transaction of the change.

Nothing is sent here. Once the transaction commits, the dispatchers of this
process are woken (:data:`doorbell`); one dispatcher of one instance fans the
event out to webhook deliveries and mail (``dispatcher.py``). A change that
rolls back raises nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from keyplane.core.events import EVENT_TYPES
from keyplane.core.grant import key_status
from keyplane.core.ids import new_id
from keyplane.service.workers import Doorbell
from keyplane.storage.database import after_commit
from keyplane.storage.models import ApiKey, Event

#: Rung after a commit that raised events (the dispatchers of this process listen).
doorbell = Doorbell()


def emit(
    session: Session,
    *,
    organization_id: str,
    event_type: str,
    at: datetime,
    data: Mapping[str, Any],
) -> str | None:
    """Add event ``event_type`` to ``session``; return its id (``msg_...``), or None
    when the type is not one of :data:`keyplane.core.events.EVENT_TYPES`."""
    if event_type not in EVENT_TYPES:
        return None
    event_id = new_id("msg")
    session.add(
        Event(
            id=event_id,
            organization_id=organization_id,
            type=event_type,
            occurred_at=at,
            data=jsonable(dict(data)),
            dispatched_at=None,
        )
    )
    after_commit(session, doorbell.ring)
    return event_id


def emit_key_event(
    session: Session,
    key: ApiKey,
    event_type: str,
    *,
    at: datetime,
    actor: str,
    details: Mapping[str, Any],
) -> str | None:
    """:func:`emit` an event about ``key`` that is not an audited change (the scheduler's
    notices, the hot path's): the same ``data`` shape as an audited one."""
    return emit(
        session,
        organization_id=key.organization_id,
        event_type=event_type,
        at=at,
        data={
            "organization_id": key.organization_id,
            "actor": actor,
            "key": key_summary(key, at),
            "details": dict(details),
        },
    )


def key_summary(key: ApiKey, now: datetime) -> dict[str, Any]:
    """What an event says about a key: never its hash, never a secret."""
    return {
        "id": key.id,
        "name": key.name,
        "hint": key.hint,
        "project_id": key.project_id,
        "status": str(key_status(key.revoked_at, key.enabled, key.expires_at, now)),
        "scopes": list(key.scopes),
        "created_at": key.created_at,
        "created_by": key.created_by,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "canary": bool(key.canary),
    }


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 text (the JSON column stores it as is)."""
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value
