"""One-time notices: the rule that an event about a key is raised once.

A notice is a row of ``key_notices`` whose primary key is (key, kind, bucket):
"expiring in 7 days, for the expiry 2026-12-10T00:00Z", "quota at 80 % in
2026-12", "rate-limited in the quarter-hour starting 10:15". Whoever inserts the
row raises the event, in the same transaction; an instance that loses the race
inserts nothing and raises nothing. The database decides, so two schedulers or
two flushers can never raise one notice twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from keyplane.storage.models import KeyNotice


def claim_notice(session: Session, key_id: str, kind: str, bucket: str, now: datetime) -> bool:
    """Insert the notice (``key_id``, ``kind``, ``bucket``); True if this call did."""
    dialect: Any = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    statement = (
        dialect.insert(KeyNotice)
        .values(key_id=key_id, kind=kind, bucket=bucket[:40], created_at=now)
        .on_conflict_do_nothing()
        .returning(KeyNotice.key_id)
    )
    # RETURNING, not rowcount: psycopg's rowcount here is not 0 on a conflict.
    return session.execute(statement).first() is not None
