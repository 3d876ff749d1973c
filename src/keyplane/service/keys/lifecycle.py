"""The key lifecycle: create, update, revoke and roll (reads are :mod:`.queries`).

Each change runs in one transaction together with its audit event and a row
of the change feed; once it commits, the feed drops the key from this
process's verification cache (before the call returns, so a revocation
through this instance takes effect at once) and tells the other instances.

Every change first locks the key's row (``SELECT ... FOR NO KEY UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), so the
checks it makes (live, not rolled yet, not revoked) still hold when it writes:
two concurrent rolls make one successor, two revokes one event. A unique index
on ``rolled_from_id`` backs the one-successor rule in the schema itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypedDict, Unpack

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyplane.config import DEFAULT_MAX_JSON_DEPTH
from keyplane.core import scopes as scope_rules
from keyplane.core.errors import InvalidInput, NotPermitted, StateConflict
from keyplane.core.grant import GrantCode, KeyStatus, key_status
from keyplane.core.ids import new_id
from keyplane.core.keys import KeyFormat
from keyplane.core.network import parse_allowlist
from keyplane.service.accounts import access
from keyplane.service.accounts.projects import find_project
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import record_key_event
from keyplane.service.events.policies import STALE, lifetime_expiry, policy_of
from keyplane.service.keys.invalidation import ChangeFeed
from keyplane.service.keys.queries import KeyQueries
from keyplane.service.limits.usage import UsageBuffer
from keyplane.service.records import (
    Actor,
    Caller,
    CreatedKey,
    KeyRecord,
    Quota,
    RateLimit,
)
from keyplane.service.validation import (
    check_expiry,
    check_metadata,
    check_name,
    check_quota,
    check_rate_limit,
)
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey

DEFAULT_ROLL_GRACE: Final = timedelta(hours=24)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


class KeySettings(TypedDict, total=False):
    """The optional settings of a new key, as :meth:`KeyService.create_in` takes them."""

    scopes: Iterable[str]
    expires_at: datetime | None
    ip_allowlist: Iterable[str]
    metadata: Mapping[str, Any] | None
    enabled: bool
    rate_limit: RateLimit | None
    quota: Quota | None
    canary: bool


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


class KeyService(KeyQueries):
    """Reads (from :class:`KeyQueries`) and every change to a key."""

    def __init__(
        self,
        database: Database,
        *,
        key_format: KeyFormat,
        changes: ChangeFeed,
        usage: UsageBuffer,
        clock: Callable[[], datetime],
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        sudo: SudoRule | None = None,
    ) -> None:
        super().__init__(database, usage=usage, clock=clock)
        #: Management scopes, rolling and revoking need a recent sign-in (sudo mode).
        self.sudo = sudo or SudoRule(clock)
        self._max_json_depth = max_json_depth
        self._format = key_format
        self._changes = changes

    # -- changes -------------------------------------------------------------

    def create(
        self, caller: Caller, project_id: str, *, name: str, **settings: Unpack[KeySettings]
    ) -> CreatedKey:
        """Create a key; its value is in the result and nowhere else, ever.

        ``settings`` are the optional ones of :meth:`create_in` (:class:`KeySettings`).
        """
        with self._database.write() as session:
            return self.create_in(session, caller, project_id, name=name, **settings)

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
        canary: bool = False,
    ) -> CreatedKey:
        """:meth:`create` inside a transaction the caller owns (used by bootstrap).

        A ``canary`` key is never accepted: it is refused like an unknown key, and any
        use raises ``key.canary_used`` (``service/events/signals.py``).
        """
        now = self._clock()
        scopes = scope_rules.validate_scopes(scopes)
        self.sudo.require_for_scopes(caller, scopes)
        name = check_name(name)
        rate_limit = check_rate_limit(rate_limit)
        quota = check_quota(quota)
        granted = self._grantable_scopes(caller, scopes)
        networks = [str(network) for network in parse_allowlist(ip_allowlist)]
        metadata = check_metadata(metadata or {}, max_depth=self._max_json_depth)
        check_expiry(expires_at, now)
        expires_at = lifetime_expiry(
            policy_of(session, caller.organization_id), expires_at, created_at=now
        )
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
            canary=bool(canary),
        )
        session.add(row)
        session.flush()
        record_key_event(
            session,
            row,
            caller.actor,
            "key.created",
            at=now,
            details={
                "name": name,
                "project_id": project.id,
                "scopes": list(granted),
                "hint": row.hint,
                **({"canary": True} if canary else {}),
            },
        )
        return CreatedKey(self._to_record(row, now), secret)

    def update(self, caller: Caller, key_id: str, changes: KeyChanges) -> KeyRecord:
        now = self._clock()
        with self._database.write() as session:
            row = self.find_row(session, caller, key_id, lock=True)
            access.require_key_manager(caller, row.created_by)
            if row.revoked_at is not None:
                raise StateConflict("a revoked key cannot be changed")
            changed: dict[str, Any] = {}
            if not isinstance(changes.name, _Unset):
                changed["name"] = row.name = check_name(changes.name)
            if not isinstance(changes.scopes, _Unset):
                new_scopes = scope_rules.validate_scopes(changes.scopes)
                if set(new_scopes) - set(row.scopes):
                    self.sudo.require_for_scopes(caller, set(new_scopes) - set(row.scopes))
                row.scopes = list(self._grantable_scopes(caller, new_scopes))
                changed["scopes"] = row.scopes
            if not isinstance(changes.expires_at, _Unset):
                check_expiry(changes.expires_at, now)
                expires_at = lifetime_expiry(
                    policy_of(session, row.organization_id),
                    changes.expires_at,
                    created_at=row.created_at,
                )
                if expires_at is not None and expires_at <= now:
                    raise InvalidInput(
                        "under this organization's default expiry this key, created "
                        f"{_iso(row.created_at)}, would already have expired; give expires_at",
                        field="expires_at",
                    )
                row.expires_at = expires_at
                changed["expires_at"] = _iso(expires_at)
            if not isinstance(changes.metadata, _Unset):
                row.meta = dict(check_metadata(changes.metadata, max_depth=self._max_json_depth))
                changed["metadata"] = True
            if not isinstance(changes.enabled, _Unset):
                _set_enabled(row, bool(changes.enabled), now, reason=None)
                changed["enabled"] = row.enabled
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
                record_key_event(
                    session,
                    row,
                    caller.actor,
                    action,
                    at=now,
                    details={"changes": changed},
                )
            record = self._to_record(row, now)
        return record

    def revoke(self, caller: Caller, key_id: str) -> KeyRecord:
        """Revoke for good. Revoking a revoked key changes nothing and succeeds."""
        now = self._clock()
        self.sudo.require(caller, "revoke a key")
        with self._database.write() as session:
            row = self.find_row(session, caller, key_id, lock=True)
            access.require_key_manager(caller, row.created_by)
            self.revoke_row(session, row, caller.actor, now)
            record = self._to_record(row, now)
        return record

    def disable_stale(
        self,
        session: Session,
        row: ApiKey,
        actor: Actor,
        now: datetime,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """Disable ``row`` (locked, in the caller's transaction) for the stale-key policy:
        ``key.auto_disabled`` in the audit log and as an event. False if it was not an
        enabled, live key (nothing changes)."""
        if row.revoked_at is not None or not row.enabled:
            return False
        _set_enabled(row, False, now, reason=STALE)
        row.updated_at = now
        self._changes.record(session, row.key_hash)
        record_key_event(
            session, row, actor, "key.auto_disabled", at=now, details=dict(details or {})
        )
        return True

    def revoke_row(
        self,
        session: Session,
        row: ApiKey,
        actor: Actor,
        now: datetime,
        *,
        details: Mapping[str, Any] | None = None,
        action: str = "key.revoked",
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
        record_key_event(
            session,
            row,
            actor,
            action,
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
        self.sudo.require(caller, "roll a key")
        now = self._clock()
        secret = self._format.generate()
        with self._database.write() as session:
            old = self.find_row(session, caller, key_id, lock=True)
            access.require_key_manager(caller, old.created_by)
            self._check_rollable(session, old, now)
            scopes = self._grantable_scopes(caller, old.scopes)
            # The new key is held to today's lifetime policy; having no say in its
            # expiry, it gets the maximum rather than a refusal.
            expires_at = lifetime_expiry(
                policy_of(session, old.organization_id),
                old.expires_at,
                created_at=now,
                without_expiry="cap",
            )
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
                expires_at=expires_at,
                rolled_from_id=old.id,
                rate_limit=old.rate_limit,
                rate_limit_window=old.rate_limit_window,
                quota_limit=old.quota_limit,
                quota_refill=old.quota_refill,
                quota_used=0,
                quota_period="",
                canary=old.canary,
            )
            session.add(new)
            old_ends = now + grace
            if old.expires_at is None or old.expires_at > old_ends:
                old.expires_at = old_ends
            old.updated_at = now
            self._changes.record(session, old.key_hash)
            session.flush()
            record_key_event(
                session,
                old,
                caller.actor,
                "key.rolled",
                at=now,
                details={"new_key_id": new.id, "old_key_expires_at": _iso(old.expires_at)},
            )
            created = CreatedKey(self._to_record(new, now), secret)
        return created

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _check_rollable(session: Session, old: ApiKey, now: datetime) -> None:
        """Only a live key with no successor yet can be rolled: rolling is not a way
        to revive an ended key, nor to fork one key into several."""
        status = key_status(old.revoked_at, old.enabled, old.expires_at, now)
        if status in (KeyStatus.REVOKED, KeyStatus.EXPIRED):
            raise StateConflict(
                f"a key that is {status.value} cannot be rolled; create a new key instead"
            )
        successor = session.scalar(
            select(ApiKey.id).where(ApiKey.rolled_from_id == old.id).limit(1)
        )
        if successor is not None:
            raise StateConflict(
                f"this key was already rolled into {successor}; roll that key instead"
            )

    @staticmethod
    def _grantable_scopes(caller: Caller, scopes: Iterable[str]) -> tuple[str, ...]:
        """Valid scopes the caller holds itself: nobody hands out more than they have."""
        normalized = scope_rules.normalize_scopes(scopes)
        access.check_member_scopes(caller, normalized)
        beyond = [scope for scope in normalized if not scope_rules.grants(caller.scopes, scope)]
        if beyond:
            raise NotPermitted(
                GrantCode.INSUFFICIENT_SCOPE,
                f"you cannot grant scopes you do not hold: {', '.join(beyond)}",
            )
        return normalized


def _set_enabled(row: ApiKey, enabled: bool, now: datetime, *, reason: str | None) -> None:
    """The one place a key is enabled or disabled: ``disabled_at`` and ``disabled_reason``
    (``stale`` from the stale-key policy, None from a person) follow ``enabled``."""
    if enabled == row.enabled:
        return
    row.enabled = enabled
    row.disabled_at = None if enabled else now
    row.disabled_reason = None if enabled else reason


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


__all__ = ["DEFAULT_ROLL_GRACE", "UNSET", "KeyChanges", "KeyService"]
