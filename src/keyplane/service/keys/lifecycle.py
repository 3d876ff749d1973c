"""The key lifecycle: create, list, get, update, revoke and roll.

Each change runs in one transaction together with its audit event, and drops
the key from this process's verification cache before returning, so a
revocation through this instance takes effect at once.

Every change first locks the key's row (``SELECT ... FOR NO KEY UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), so the
checks it makes (live, not rolled yet, not revoked) still hold when it writes:
two concurrent rolls make one successor, two revokes one event. A unique index
on ``rolled_from_id`` backs the one-successor rule in the schema itself.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session

from keyplane.config import DEFAULT_MAX_JSON_DEPTH
from keyplane.core import quotas
from keyplane.core import scopes as scope_rules
from keyplane.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from keyplane.core.grant import GrantCode, KeyStatus, key_status
from keyplane.core.ids import is_id, new_id
from keyplane.core.keys import KeyFormat
from keyplane.core.network import parse_allowlist
from keyplane.service.accounts import access
from keyplane.service.accounts.projects import find_project
from keyplane.service.audit import record_event
from keyplane.service.keys.invalidation import ChangeFeed
from keyplane.service.limits.usage import UsageBuffer
from keyplane.service.pagination import check_limit, decode_cursor, encode_cursor
from keyplane.service.records import (
    Actor,
    Caller,
    CreatedKey,
    KeyRecord,
    Page,
    Quota,
    QuotaStatus,
    RateLimit,
    UsageBucket,
)
from keyplane.service.validation import (
    check_expiry,
    check_metadata,
    check_name,
    check_quota,
    check_rate_limit,
    renderable,
)
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey, KeyUsage

DEFAULT_ROLL_GRACE: Final = timedelta(hours=24)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(frozen=True)
class KeyChanges:
    """A partial update: fields left ``UNSET`` keep their value."""

    name: str | _Unset = UNSET
    scopes: Iterable[str] | _Unset = UNSET
    expires_at: datetime | _Unset | None = UNSET
    metadata: Mapping[str, Any] | _Unset = UNSET
    enabled: bool | _Unset = UNSET
    ip_allowlist: Iterable[str] | _Unset = UNSET
    rate_limit: RateLimit | _Unset | None = UNSET
    quota: Quota | _Unset | None = UNSET


USAGE_INTERVALS: Final = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
#: The most buckets one usage query returns (a year of days, or 60 days of hours).
MAX_USAGE_BUCKETS: Final = 1_440


class KeyService:
    def __init__(
        self,
        database: Database,
        *,
        key_format: KeyFormat,
        changes: ChangeFeed,
        usage: UsageBuffer,
        clock: Callable[[], datetime],
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    ) -> None:
        self._database = database
        self._max_json_depth = max_json_depth
        self._format = key_format
        self._changes = changes
        self._usage = usage
        self._clock = clock

    # -- reads ---------------------------------------------------------------

    def get(self, caller: Caller, key_id: str) -> KeyRecord:
        with self._database.read() as session:
            row = self._find(session, caller, key_id)
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
        after = decode_cursor(cursor)
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
        if after is not None:
            query = query.where(ApiKey.pk < after)
        query = query.order_by(ApiKey.pk.desc()).limit(limit + 1)
        with self._database.read() as session:
            find_project(session, caller.organization_id, project_id)
            rows = session.scalars(query).all()
            more = len(rows) > limit
            rows = rows[:limit]
            return Page(
                items=tuple(self._to_record(row, now) for row in rows),
                next_cursor=encode_cursor(rows[-1].pk) if more else None,
            )

    # -- changes -------------------------------------------------------------

    def create(
        self,
        caller: Caller,
        project_id: str,
        *,
        name: str,
        scopes: Iterable[str] = (),
        expires_at: datetime | None = None,
        ip_allowlist: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        enabled: bool = True,
        rate_limit: RateLimit | None = None,
        quota: Quota | None = None,
    ) -> CreatedKey:
        """Create a key; its value is in the result and nowhere else, ever."""
        with self._database.write() as session:
            return self.create_in(
                session,
                caller,
                project_id,
                name=name,
                scopes=scopes,
                expires_at=expires_at,
                ip_allowlist=ip_allowlist,
                metadata=metadata,
                enabled=enabled,
                rate_limit=rate_limit,
                quota=quota,
            )

    def create_in(
        self,
        session: Session,
        caller: Caller,
        project_id: str,
        *,
        name: str,
        scopes: Iterable[str] = (),
        expires_at: datetime | None = None,
        ip_allowlist: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        enabled: bool = True,
        rate_limit: RateLimit | None = None,
        quota: Quota | None = None,
    ) -> CreatedKey:
        """:meth:`create` inside a transaction the caller owns (used by bootstrap)."""
        now = self._clock()
        name = check_name(name)
        rate_limit = check_rate_limit(rate_limit)
        quota = check_quota(quota)
        granted = self._grantable_scopes(caller, scopes)
        networks = [str(network) for network in parse_allowlist(ip_allowlist)]
        metadata = check_metadata(metadata or {}, max_depth=self._max_json_depth)
        check_expiry(expires_at, now)
        secret = self._format.generate()
        project = find_project(session, caller.organization_id, project_id)
        row = ApiKey(
            id=new_id("key"),
            organization_id=project.organization_id,
            project_id=project.id,
            name=name,
            key_hash=secret.hash(),
            hint=secret.hint,
            scopes=list(granted),
            ip_allowlist=networks,
            meta=dict(metadata),
            enabled=enabled,
            created_at=now,
            created_by=caller.actor.name,
            updated_at=now,
            expires_at=expires_at,
            rate_limit=rate_limit.limit if rate_limit else None,
            rate_limit_window=rate_limit.window_seconds if rate_limit else None,
            quota_limit=quota.limit if quota else None,
            quota_refill=quota.refill if quota else None,
            quota_used=0,
            quota_period="",
        )
        session.add(row)
        session.flush()
        record_event(
            session,
            organization_id=row.organization_id,
            actor=caller.actor,
            action="key.created",
            target_type="key",
            target_id=row.id,
            at=now,
            details={
                "name": name,
                "project_id": project.id,
                "scopes": list(granted),
                "hint": row.hint,
            },
        )
        return CreatedKey(self._to_record(row, now), secret)

    def update(self, caller: Caller, key_id: str, changes: KeyChanges) -> KeyRecord:
        now = self._clock()
        with self._database.write() as session:
            row = self._find(session, caller, key_id, lock=True)
            access.require_key_manager(caller, row.created_by)
            if row.revoked_at is not None:
                raise Conflict("a revoked key cannot be changed")
            changed: dict[str, Any] = {}
            if not isinstance(changes.name, _Unset):
                changed["name"] = row.name = check_name(changes.name)
            if not isinstance(changes.scopes, _Unset):
                row.scopes = list(self._grantable_scopes(caller, changes.scopes))
                changed["scopes"] = row.scopes
            if not isinstance(changes.expires_at, _Unset):
                check_expiry(changes.expires_at, now)
                row.expires_at = changes.expires_at
                changed["expires_at"] = _iso(changes.expires_at)
            if not isinstance(changes.metadata, _Unset):
                row.meta = dict(check_metadata(changes.metadata, max_depth=self._max_json_depth))
                changed["metadata"] = True
            if not isinstance(changes.enabled, _Unset):
                changed["enabled"] = row.enabled = bool(changes.enabled)
            if not isinstance(changes.ip_allowlist, _Unset):
                row.ip_allowlist = [str(net) for net in parse_allowlist(changes.ip_allowlist)]
                changed["ip_allowlist"] = row.ip_allowlist
            if not isinstance(changes.rate_limit, _Unset):
                rate_limit = check_rate_limit(changes.rate_limit)
                row.rate_limit = rate_limit.limit if rate_limit else None
                row.rate_limit_window = rate_limit.window_seconds if rate_limit else None
                changed["rate_limit"] = (
                    {"limit": rate_limit.limit, "window_seconds": rate_limit.window_seconds}
                    if rate_limit
                    else None
                )
            if not isinstance(changes.quota, _Unset):
                quota = check_quota(changes.quota)
                row.quota_limit = quota.limit if quota else None
                row.quota_refill = quota.refill if quota else None
                changed["quota"] = {"limit": quota.limit, "refill": quota.refill} if quota else None
            if changed:
                self._changes.record(session, row.key_hash)
                row.updated_at = now
                action = "key.updated"
                if set(changed) == {"enabled"}:
                    action = "key.enabled" if row.enabled else "key.disabled"
                record_event(
                    session,
                    organization_id=row.organization_id,
                    actor=caller.actor,
                    action=action,
                    target_type="key",
                    target_id=row.id,
                    at=now,
                    details={"changes": changed},
                )
            record = self._to_record(row, now)
        return record

    def revoke(self, caller: Caller, key_id: str) -> KeyRecord:
        """Revoke for good. Revoking a revoked key changes nothing and succeeds."""
        now = self._clock()
        with self._database.write() as session:
            row = self._find(session, caller, key_id, lock=True)
            access.require_key_manager(caller, row.created_by)
            self.revoke_row(session, row, caller.actor, now)
            record = self._to_record(row, now)
        return record

    def revoke_row(
        self,
        session: Session,
        row: ApiKey,
        actor: Actor,
        now: datetime,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """Revoke ``row`` in the caller's transaction, with its audit event.

        ``row`` must have been read with :func:`locked` (or ``_find(lock=True)``) in
        this transaction, so that two revocations cannot both see it live. True if
        the key was live; False if it was already revoked (nothing changes). The
        change feed tells the caches once the transaction commits.
        """
        if row.revoked_at is not None:
            return False
        row.revoked_at = now
        row.revoked_by = actor.name
        row.updated_at = now
        self._changes.record(session, row.key_hash)
        record_event(
            session,
            organization_id=row.organization_id,
            actor=actor,
            action="key.revoked",
            target_type="key",
            target_id=row.id,
            at=now,
            details={"name": row.name, "hint": row.hint, **(details or {})},
        )
        return True

    def roll(
        self, caller: Caller, key_id: str, *, grace: timedelta = DEFAULT_ROLL_GRACE
    ) -> CreatedKey:
        """A new key with the same settings; the old one expires after ``grace``."""
        if grace < timedelta(0):
            raise InvalidInput("the grace period cannot be negative", field="grace_period_seconds")
        now = self._clock()
        secret = self._format.generate()
        with self._database.write() as session:
            old = self._find(session, caller, key_id, lock=True)
            access.require_key_manager(caller, old.created_by)
            self._check_rollable(session, old, now)
            scopes = self._grantable_scopes(caller, old.scopes)
            new = ApiKey(
                id=new_id("key"),
                organization_id=old.organization_id,
                project_id=old.project_id,
                name=old.name,
                key_hash=secret.hash(),
                hint=secret.hint,
                scopes=list(scopes),
                ip_allowlist=list(old.ip_allowlist),
                meta=dict(old.meta),
                enabled=old.enabled,
                created_at=now,
                created_by=caller.actor.name,
                updated_at=now,
                expires_at=old.expires_at,
                rolled_from_id=old.id,
                rate_limit=old.rate_limit,
                rate_limit_window=old.rate_limit_window,
                quota_limit=old.quota_limit,
                quota_refill=old.quota_refill,
                quota_used=0,
                quota_period="",
            )
            session.add(new)
            old_ends = now + grace
            if old.expires_at is None or old.expires_at > old_ends:
                old.expires_at = old_ends
            old.updated_at = now
            self._changes.record(session, old.key_hash)
            session.flush()
            record_event(
                session,
                organization_id=old.organization_id,
                actor=caller.actor,
                action="key.rolled",
                target_type="key",
                target_id=old.id,
                at=now,
                details={"new_key_id": new.id, "old_key_expires_at": _iso(old.expires_at)},
            )
            created = CreatedKey(self._to_record(new, now), secret)
        return created

    # -- usage analytics -----------------------------------------------------

    def usage(
        self,
        caller: Caller,
        key_id: str,
        *,
        interval: str = "day",
        since: datetime | None = None,
        until: datetime | None = None,
        zero_fill: bool = True,
    ) -> builtins.list[UsageBucket]:
        """Verifications of a key per hour or day, by outcome, oldest bucket first.

        ``since`` defaults to 30 days (``day``) or 48 hours (``hour``) before
        ``until`` (default now); both are rounded down to a bucket start. With
        ``zero_fill`` every bucket in the range is present, empty ones included.
        Counts not yet written by this process's usage buffer are included.
        """
        step = USAGE_INTERVALS.get(interval)
        if step is None:
            raise InvalidInput("interval is hour or day", field="interval")
        now = self._clock()
        end = bucket_start(interval, until or now)
        # The last bucket must be followed by another that a datetime can hold, and
        # the default range must fit before the first: else the arithmetic overflows.
        if end > datetime.max.replace(tzinfo=end.tzinfo) - step:
            raise InvalidInput("until is too far in the future", field="until")
        default_span = step * (30 if interval == "day" else 47)
        if since is None and end < datetime.min.replace(tzinfo=end.tzinfo) + default_span:
            raise InvalidInput("until is too far in the past", field="until")
        start = bucket_start(interval, since or end - default_span)
        if start > end:
            raise InvalidInput("since must be before until", field="since")
        if (end - start) // step >= MAX_USAGE_BUCKETS:
            raise InvalidInput(
                f"at most {MAX_USAGE_BUCKETS} {interval}s per query; narrow since", field="since"
            )
        counts: dict[datetime, dict[str, int]] = {}
        with self._database.read() as session:
            self._find(session, caller, key_id)
            rows = session.execute(
                select(KeyUsage.bucket, KeyUsage.outcome, KeyUsage.count).where(
                    KeyUsage.key_id == key_id,
                    KeyUsage.interval == interval,
                    KeyUsage.bucket >= start,
                    KeyUsage.bucket <= end,
                )
            ).all()
        for bucket, outcome, count in rows:
            outcomes = counts.setdefault(bucket, {})
            outcomes[outcome] = outcomes.get(outcome, 0) + count
        for (hour, outcome), count in self._usage.pending_counts(key_id).items():
            bucket = bucket_start(interval, hour)
            if start <= bucket <= end:
                outcomes = counts.setdefault(bucket, {})
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        if not zero_fill:
            return [UsageBucket(at, counts[at]) for at in sorted(counts)]
        buckets = (start + step * index for index in range((end - start) // step + 1))
        return [UsageBucket(at, counts.get(at, {})) for at in buckets]

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _check_rollable(session: Session, old: ApiKey, now: datetime) -> None:
        """Only a live key with no successor yet can be rolled: rolling is not a way
        to revive an ended key, nor to fork one key into several."""
        status = key_status(old.revoked_at, old.enabled, old.expires_at, now)
        if status in (KeyStatus.REVOKED, KeyStatus.EXPIRED):
            raise Conflict(
                f"a key that is {status.value} cannot be rolled; create a new key instead"
            )
        successor = session.scalar(
            select(ApiKey.id).where(ApiKey.rolled_from_id == old.id).limit(1)
        )
        if successor is not None:
            raise Conflict(f"this key was already rolled into {successor}; roll that key instead")

    def _find(self, session: Session, caller: Caller, key_id: str, *, lock: bool = False) -> ApiKey:
        """The caller's key; with ``lock``, its row locked until the transaction ends."""
        if not is_id(key_id, "key"):
            raise NotFound("key", key_id)
        query = select(ApiKey).where(
            ApiKey.id == key_id, ApiKey.organization_id == caller.organization_id
        )
        row = session.scalar(locked(query) if lock else query)
        if row is None:
            raise NotFound("key", key_id)
        return row

    @staticmethod
    def _grantable_scopes(caller: Caller, scopes: Iterable[str]) -> tuple[str, ...]:
        """Valid scopes the caller holds itself: nobody hands out more than they have."""
        normalized = scope_rules.normalize_scopes(scopes)
        access.check_member_scopes(caller, normalized)
        beyond = [scope for scope in normalized if not scope_rules.grants(caller.scopes, scope)]
        if beyond:
            raise PermissionDenied(
                GrantCode.INSUFFICIENT_SCOPE,
                f"you cannot grant scopes you do not hold: {', '.join(beyond)}",
            )
        return normalized

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
        return KeyRecord(
            id=row.id,
            name=row.name,
            hint=row.hint,
            organization_id=row.organization_id,
            project_id=row.project_id,
            status=key_status(row.revoked_at, row.enabled, row.expires_at, now),
            enabled=row.enabled,
            scopes=tuple(row.scopes),
            ip_allowlist=tuple(row.ip_allowlist),
            metadata=dict(renderable(row.meta, "metadata")),
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            rolled_from_id=row.rolled_from_id,
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


__all__ = ["DEFAULT_ROLL_GRACE", "UNSET", "KeyChanges", "KeyService", "locked"]


def bucket_start(interval: str, at: datetime) -> datetime:
    """The start of the hour or (UTC) day holding ``at``."""
    try:
        at = at.astimezone(UTC)
    except OverflowError:  # 0001-01-01 with a positive offset, 9999-12-31 with a negative one
        raise InvalidInput("that date is out of range") from None
    if interval == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)
