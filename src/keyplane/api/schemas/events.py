"""Events and who uses a key: the answers of ``api/events.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from keyplane.api.schemas.base import FromRecord


class EventOut(FromRecord):
    id: str = Field(description="msg_...: the webhook-id header of every delivery of it.")
    type: str = Field(description="e.g. key.revoked; GET /api/v1/event-types lists them.")
    occurred_at: datetime
    data: dict[str, Any] = Field(description="The payload's data object (docs/events.md).")


class EventTypeOut(FromRecord):
    name: str
    description: str
    mailed: bool = Field(description="Mailed to owners, admins and the key's creator by default.")


class CallerOut(FromRecord):
    value: str = Field(description="A client IP, or a user agent (empty: none was sent).")
    count: int = Field(description="Uses counted since first seen.")
    first_seen_at: datetime
    last_seen_at: datetime


class KeyCallersOut(FromRecord):
    key_id: str
    days: int
    ips: list[CallerOut]
    user_agents: list[CallerOut]
