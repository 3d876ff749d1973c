"""Reading the organization's events (``GET /api/v1/events``): what was sent, or would be."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from keyplane.core.errors import InvalidInput
from keyplane.core.events import is_event_type
from keyplane.service.accounts import access
from keyplane.service.pagination import check_limit, newest_first, page_of
from keyplane.service.records import Caller, Page
from keyplane.storage.database import Database
from keyplane.storage.models import Event


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class EventLog:
    def __init__(self, database: Database) -> None:
        self._database = database

    def events(
        self,
        caller: Caller,
        *,
        event_type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[EventRecord]:
        """The caller's organization's events, newest first (kept 30 days)."""
        access.require_manager(caller, "read the organization's events")
        limit = check_limit(limit)
        query = select(Event).where(Event.organization_id == caller.organization_id)
        if event_type is not None:
            if not is_event_type(event_type):
                raise InvalidInput(f"{event_type[:60]!r} is not an event type", field="type")
            query = query.where(Event.type == event_type)
        query = newest_first(query, Event.pk, cursor, limit)
        with self._database.read() as session:
            rows = session.scalars(query).all()
        return page_of(
            rows, limit, lambda row: EventRecord(row.id, row.type, row.occurred_at, dict(row.data))
        )
