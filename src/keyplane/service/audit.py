"""The audit log: one event per change, written in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyplane.core.ids import new_id
from keyplane.service.accounts import access
from keyplane.service.events.emit import emit, key_summary
from keyplane.service.pagination import (
    check_limit,
    newest_first,
    page_of,
)
from keyplane.service.records import Actor, AuditEventRecord, Caller, Page, record_of
from keyplane.service.validation import check_filter, clip_user_agent
from keyplane.storage.database import Database
from keyplane.storage.models import AuditEvent, Membership


def record_event(
    session: Session,
    *,
    organization_id: str,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    at: datetime,
    details: Mapping[str, Any] | None = None,
    subject: Mapping[str, Any] | None = None,
) -> None:
    """Add an audit event to ``session``: it commits or rolls back with the change.

    An action that is also an event type (``core/events.py``) raises that event in
    the same transaction, for webhooks and mail; ``subject`` is what the event says
    about the target (a key's summary), else it names the target's type and id.
    """
    session.add(
        AuditEvent(
            id=new_id("evt"),
            organization_id=organization_id,
            actor=actor.name,
            action=action,
            target_type=target_type,
            target_id=target_id,
            client_ip=actor.client_ip,
            user_agent=clip_user_agent(actor.user_agent),
            occurred_at=at,
            details=dict(details or {}),
        )
    )
    emit(
        session,
        organization_id=organization_id,
        event_type=action,
        at=at,
        data={
            "organization_id": organization_id,
            "actor": actor.name,
            **(dict(subject) if subject is not None else {target_type: {"id": target_id}}),
            "details": dict(details or {}),
        },
    )


def record_by(
    session: Session,
    caller: Caller,
    action: str,
    target: tuple[str, str],
    *,
    at: datetime,
    details: Mapping[str, Any] | None = None,
) -> None:
    """:func:`record_event` for the common case: ``caller`` did ``action`` to
    ``target`` (its type and id) in its own organization."""
    record_event(
        session,
        organization_id=caller.organization_id,
        actor=caller.actor,
        action=action,
        target_type=target[0],
        target_id=target[1],
        at=at,
        details=details,
    )


def record_account_event(
    session: Session,
    user_id: str,
    actor: Actor,
    action: str,
    *,
    at: datetime,
    details: Mapping[str, Any] | None = None,
) -> None:
    """:func:`record_event` about a person's account (sign-ins, passwords, factors):
    an account is not in one organization, so the event goes to each of theirs."""
    organizations = session.scalars(
        select(Membership.organization_id).where(Membership.user_id == user_id)
    ).all()
    for organization_id in organizations:
        record_event(
            session,
            organization_id=organization_id,
            actor=actor,
            action=action,
            target_type="user",
            target_id=user_id,
            at=at,
            details=details,
        )


def record_key_event(
    session: Session,
    key: Any,
    actor: Actor,
    action: str,
    *,
    at: datetime,
    details: Mapping[str, Any] | None = None,
) -> None:
    """:func:`record_event` about a key (its row): in the key's organization."""
    record_event(
        session,
        organization_id=key.organization_id,
        actor=actor,
        action=action,
        target_type="key",
        target_id=key.id,
        at=at,
        details=details,
        subject={"key": key_summary(key, at)},
    )


class AuditService:
    """Reading the audit log (events are written by :func:`record_event`, inside the
    transaction of the change they describe)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def events(
        self,
        caller: Caller,
        *,
        action: str | None = None,
        key_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[AuditEventRecord]:
        """The caller's organization's events, newest first, filtered as asked: all of
        them for a manager (or a key, whose scope was checked), one key's trail for a
        member."""
        if key_id is None:
            access.require_manager(caller, "read the organization's audit log")
        limit = check_limit(limit)
        for field, value in (("action", action), ("key_id", key_id), ("actor", actor)):
            if value is not None:
                check_filter(value, field)
        query = select(AuditEvent).where(AuditEvent.organization_id == caller.organization_id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        if key_id is not None:
            query = query.where(AuditEvent.target_id == key_id)
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        if since is not None:
            query = query.where(AuditEvent.occurred_at >= since)
        if until is not None:
            query = query.where(AuditEvent.occurred_at < until)
        query = newest_first(query, AuditEvent.pk, cursor, limit)
        with self._database.read() as session:
            rows = session.scalars(query).all()
        return page_of(rows, limit, _to_record)


def _to_record(row: AuditEvent) -> AuditEventRecord:
    return record_of(AuditEventRecord, row)
