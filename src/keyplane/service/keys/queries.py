"""Reading keys: one key, a filtered page of keys, and the record a key is shown as.

A key's record merges what the usage buffer holds in memory (the latest use,
quota uses not yet written), so a key used a moment ago shows as used.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session

from keyplane.core import quotas
from keyplane.core.errors import ObjectNotFound
from keyplane.core.grant import KeyStatus, key_status
from keyplane.core.ids import is_id
from keyplane.service.accounts.projects import find_project
from keyplane.service.limits.usage import UsageBuffer
from keyplane.service.pagination import (
    check_limit,
    newest_first,
    page_of,
)
from keyplane.service.records import Caller, KeyRecord, Page, QuotaStatus, RateLimit, record_of
from keyplane.service.validation import renderable
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey


class KeyQueries:
    def __init__(
        self, database: Database, *, usage: UsageBuffer, clock: Callable[[], datetime]
    ) -> None:
        self._database = database
        self._usage = usage
        self._clock = clock

    # -- reads ---------------------------------------------------------------

    def get(self, caller: Caller, key_id: str) -> KeyRecord:
        with self._database.read() as session:
            row = self.find_row(session, caller, key_id)
            return self._to_record(row, self._clock())

    def list(
        self,
        caller: Caller,
        project_id: str,
        *,
        status: KeyStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        revoked: bool | None = None,
    ) -> Page[KeyRecord]:
        """A project's keys, newest first; ``status=None`` lists every key.

        ``revoked=False`` leaves revoked keys out (the console's "Active" tab keeps
        disabled and expired keys in view, with their status); ``True`` keeps only them.
        """
        limit = check_limit(limit)
        now = self._clock()
        query = select(ApiKey).where(
            ApiKey.project_id == project_id, ApiKey.organization_id == caller.organization_id
        )
        if status is not None:
            query = query.where(_status_filter(status, now))
        if revoked is not None:
            query = query.where(
                ApiKey.revoked_at.is_not(None) if revoked else ApiKey.revoked_at.is_(None)
            )
        query = newest_first(query, ApiKey.pk, cursor, limit)
        with self._database.read() as session:
            find_project(session, caller.organization_id, project_id)
            rows = session.scalars(query).all()
            return page_of(rows, limit, lambda row: self._to_record(row, now))

    def find_row(
        self, session: Session, caller: Caller, key_id: str, *, lock: bool = False
    ) -> ApiKey:
        """The caller's key; with ``lock``, its row locked until the transaction ends."""
        if not is_id(key_id, "key"):
            raise ObjectNotFound("key", key_id)
        query = select(ApiKey).where(
            ApiKey.id == key_id, ApiKey.organization_id == caller.organization_id
        )
        row = session.scalar(locked(query) if lock else query)
        if row is None:
            raise ObjectNotFound("key", key_id)
        return row

    def _to_record(self, row: ApiKey, now: datetime) -> KeyRecord:
        last_used_at, last_used_ip, last_used_user_agent = (
            row.last_used_at,
            row.last_used_ip,
            row.last_used_user_agent,
        )
        pending = self._usage.pending(row.id)
        if pending is not None and (last_used_at is None or pending.at > last_used_at):
            last_used_at = pending.at
            last_used_ip = str(pending.client_ip) if pending.client_ip is not None else None
            last_used_user_agent = pending.user_agent
        return record_of(
            KeyRecord,
            row,
            status=key_status(row.revoked_at, row.enabled, row.expires_at, now),
            scopes=tuple(row.scopes),
            ip_allowlist=tuple(row.ip_allowlist),
            metadata=dict(renderable(row.meta, "metadata")),
            last_used_at=last_used_at,
            last_used_ip=last_used_ip,
            last_used_user_agent=last_used_user_agent,
            rate_limit=(
                RateLimit(row.rate_limit, row.rate_limit_window or 60)
                if row.rate_limit is not None
                else None
            ),
            quota=self._quota_status(row, now),
        )

    def _quota_status(self, row: ApiKey, now: datetime) -> QuotaStatus | None:
        if row.quota_limit is None:
            return None
        period = quotas.period_of(row.quota_refill, now)
        used = quotas.used_in(period, row.quota_period, row.quota_used)
        used += self._usage.pending_quota(row.id, period)
        return QuotaStatus(
            limit=row.quota_limit,
            refill=row.quota_refill,
            used=used,
            remaining=max(0, row.quota_limit - used),
            resets_at=quotas.period_end(row.quota_refill, now),
        )


def _status_filter(status: KeyStatus, now: datetime) -> ColumnElement[bool]:
    """``core.grant.key_status`` as SQL, for listing keys by status (both spellings
    are held together by tests/service/test_status_filter.py)."""
    not_revoked = ApiKey.revoked_at.is_(None)
    expired = and_(ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now)
    if status is KeyStatus.REVOKED:
        return ApiKey.revoked_at.is_not(None)
    if status is KeyStatus.DISABLED:
        return and_(not_revoked, ApiKey.enabled.is_(False))
    if status is KeyStatus.EXPIRED:
        return and_(not_revoked, ApiKey.enabled.is_(True), expired)
    return and_(
        not_revoked,
        ApiKey.enabled.is_(True),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
    )


def locked(query: Select[ApiKey]) -> Select[ApiKey]:
    """``query`` locking the keys it reads until the transaction ends, in id order.

    ``FOR NO KEY UPDATE`` (not ``FOR UPDATE``): it serializes changes to the key
    without blocking the foreign-key checks of rows that point at it (leak
    reports). One order for every transaction that locks several keys (leak
    reports; the usage flush updates in the same order) means no deadlock.
    SQLite ignores the clause: its writers are serialized by ``BEGIN IMMEDIATE``.
    """
    return (
        query.order_by(ApiKey.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
