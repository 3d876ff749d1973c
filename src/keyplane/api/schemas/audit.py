"""The audit log's answer, read from its record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyplane.api.schemas.base import FromRecord


# Read from ``service.records.AuditEventRecord``.
class AuditEventOut(FromRecord):
    id: str
    organization_id: str
    actor: str
    action: str
    target_type: str
    target_id: str
    client_ip: str | None
    user_agent: str | None
    occurred_at: datetime
    details: dict[str, Any]
