"""One-time notices: the rule that an event about a key is raised once.

A notice is a row of ``key_notices`` whose primary key is (key, kind, bucket):
"expiring in 7 days, for the expiry 2026-12-10T00:00Z", "quota at 80 % in
2026-12", "rate-limited in the quarter-hour starting 10:15". Whoever inserts the
row raises the event, in the same transaction; an instance that loses the race
inserts nothing and raises nothing. The database decides, so two schedulers or
two flushers can never raise one notice twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from keyplane.storage.models import KeyNotice

BUCKET_LENGTH = 40


def claim_notices(
    session: Session, kind: str, buckets: Mapping[str, str], now: datetime
) -> set[str]:
    """Insert the notices (key id, ``kind``, bucket) of ``buckets`` (key id -> bucket);
    return the key ids whose notice this call inserted: the ones to raise the event for.
    A notice already there (an earlier scan, or another instance's at the same time)
    is skipped, not an error."""
    wanted = {key_id: bucket[:BUCKET_LENGTH] for key_id, bucket in buckets.items()}
    if not wanted:
        return set()
    existing = set(
        session.execute(
            select(KeyNotice.key_id, KeyNotice.bucket).where(
                KeyNotice.kind == kind, KeyNotice.key_id.in_(list(wanted))
            )
        ).all()
    )
    fresh = [
        {"key_id": key_id, "kind": kind, "bucket": bucket, "created_at": now}
        for key_id, bucket in wanted.items()
        if (key_id, bucket) not in existing
    ]
    if not fresh:
        return set()
    dialect: Any = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    statement = (
        dialect.insert(KeyNotice).values(fresh).on_conflict_do_nothing().returning(KeyNotice.key_id)
    )
    # RETURNING, not rowcount: psycopg's rowcount is not 0 for a row that conflicted.
    return set(session.scalars(statement).all())


def claim_notice(session: Session, key_id: str, kind: str, bucket: str, now: datetime) -> bool:
    """:func:`claim_notices` for one key: True if this call inserted the notice."""
    return key_id in claim_notices(session, kind, {key_id: bucket}, now)
