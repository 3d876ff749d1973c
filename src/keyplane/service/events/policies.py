"""An organization's key policies: the lifetime rule and the stale-key rule.

Two policies, stored on the organization's row (``storage/models.py``):

- **Lifetime**: ``max_lifetime_seconds`` (a key lives at most this long from its
  creation) and ``default_expiry_seconds`` (what a key created without an expiry
  gets). :func:`lifetime_expiry` is the one rule; ``KeyService`` applies it on
  create, update (a new expiry, or removing it) and roll (the new key). Turning the
  policy on changes no existing key: only keys created or changed afterwards are
  held to it (the dry run lists the existing keys that do not meet it).
- **Stale keys**: a key with no activity for ``stale_days`` (N) days is stale.
  Activity is its last use, else its creation, or a person's last change to it
  (``updated_at``: enabling it again counts, so a key a person re-enabled is not
  disabled again at the next scan). At N-7 days the scheduler raises
  ``key.unused``; at N it disables the key (``stale_disable``; else it only
  reports it), and a key it disabled is revoked ``stale_revoke_days`` (M) days
  later. :func:`stale_condition` is the SQL of each stage, shared by the scan
  (``scheduler.py``) and the dry run, so a preview lists exactly the keys the
  next scan touches.

Reading needs an owner or an admin (or a key with ``policies:read``); a change
needs an owner or an admin in sudo mode (or a key with ``policies:write``): every
change, tightening included, since a tighter policy disables and revokes keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Interval, and_, false, func, literal, or_, select, true
from sqlalchemy.orm import Session

from keyplane.core.errors import InvalidInput, ObjectNotFound
from keyplane.service.accounts import access
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import record_by
from keyplane.service.records import Caller
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey, Organization

HOUR: Final = 3600
DAY: Final = 86400
MIN_LIFETIME: Final = HOUR
MAX_LIFETIME: Final = 5 * 365 * DAY
#: The warning comes this many days before the stale-key policy acts.
WARNING_DAYS: Final = 7
MIN_STALE_DAYS: Final = WARNING_DAYS + 1
MAX_DAYS: Final = 3650
#: A dry run lists at most this many keys of each kind (and counts them all).
DRY_RUN_LIMIT: Final = 100
#: ``ApiKey.disabled_reason`` of a key the stale-key policy disabled.
STALE: Final = "stale"


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """An organization's key policies; ``None`` (or ``False``) is "no such policy"."""

    max_lifetime_seconds: int | None = None
    default_expiry_seconds: int | None = None
    stale_days: int | None = None
    stale_disable: bool = False
    stale_revoke_days: int | None = None

    @property
    def limits_lifetime(self) -> bool:
        return self.max_lifetime_seconds is not None or self.default_expiry_seconds is not None


def check_policy(policy: KeyPolicy) -> KeyPolicy:
    """``policy`` if every value is in range and they agree; else :class:`InvalidInput`
    naming the field."""
    for field in ("max_lifetime_seconds", "default_expiry_seconds"):
        value = getattr(policy, field)
        if value is not None and not MIN_LIFETIME <= value <= MAX_LIFETIME:
            raise InvalidInput(
                f"{field} is {MIN_LIFETIME} (1 hour) to {MAX_LIFETIME} (5 years) seconds",
                field=field,
            )
    maximum, default = policy.max_lifetime_seconds, policy.default_expiry_seconds
    if maximum is not None and default is not None and default > maximum:
        raise InvalidInput(
            f"default_expiry_seconds ({default}) cannot be longer than "
            f"max_lifetime_seconds ({maximum})",
            field="default_expiry_seconds",
        )
    if policy.stale_days is not None and not MIN_STALE_DAYS <= policy.stale_days <= MAX_DAYS:
        raise InvalidInput(
            f"stale_days is {MIN_STALE_DAYS} to {MAX_DAYS} days "
            f"(the warning comes {WARNING_DAYS} days before)",
            field="stale_days",
        )
    if policy.stale_revoke_days is not None:
        if not 1 <= policy.stale_revoke_days <= MAX_DAYS:
            raise InvalidInput(
                f"stale_revoke_days is 1 to {MAX_DAYS} days", field="stale_revoke_days"
            )
        if policy.stale_days is None or not policy.stale_disable:
            raise InvalidInput(
                "stale_revoke_days revokes keys the policy disabled: it needs stale_days "
                "and stale_disable",
                field="stale_revoke_days",
            )
    if policy.stale_disable and policy.stale_days is None:
        raise InvalidInput("stale_disable needs stale_days", field="stale_disable")
    return policy


def describe_seconds(seconds: int) -> str:
    """``7776000`` -> ``90 days``; ``7200`` -> ``2 hours``."""
    if seconds % DAY == 0:
        days = seconds // DAY
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % HOUR == 0:
        hours = seconds // HOUR
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{seconds} seconds"


def lifetime_expiry(
    policy: KeyPolicy,
    requested: datetime | None,
    *,
    created_at: datetime,
    without_expiry: Literal["refuse", "cap"] = "refuse",
) -> datetime | None:
    """The expiry a key created at ``created_at`` gets when ``requested`` is asked: the one
    lifetime rule (create, update, roll).

    - no expiry asked: the default expiry if there is one; else, under a maximum,
      refused (``without_expiry="refuse"``, create and update) or the maximum
      (``"cap"``: a roll, whose new key cannot be given an expiry and must not be
      blocked, since rolling is how a leaked key is replaced);
    - an expiry past ``created_at`` + the maximum: refused, with the latest allowed
      (``"cap"``: the maximum, for the same reason).
    """
    maximum, default = policy.max_lifetime_seconds, policy.default_expiry_seconds
    if requested is None:
        if default is not None:
            return created_at + timedelta(seconds=default)
        if maximum is None:
            return None
        if without_expiry == "cap":
            return created_at + timedelta(seconds=maximum)
        raise InvalidInput(
            f"this organization's keys must expire within {describe_seconds(maximum)} "
            "of their creation; give expires_at",
            field="expires_at",
        )
    if maximum is not None:
        latest = created_at + timedelta(seconds=maximum)
        if requested > latest and without_expiry == "cap":
            return latest
        if requested > latest:
            raise InvalidInput(
                f"this organization's keys live at most {describe_seconds(maximum)}: "
                f"expires_at must be on or before {latest.isoformat().replace('+00:00', 'Z')}",
                field="expires_at",
            )
    return requested


def policy_of(session: Session, organization_id: str) -> KeyPolicy:
    """The organization's policies, read in ``session``."""
    row = session.execute(
        select(
            Organization.key_max_lifetime,
            Organization.key_default_expiry,
            Organization.stale_key_days,
            Organization.stale_key_disable,
            Organization.stale_key_revoke_days,
        ).where(Organization.id == organization_id)
    ).one_or_none()
    if row is None:
        raise ObjectNotFound("organization", organization_id)
    return KeyPolicy(row[0], row[1], row[2], bool(row[3]), row[4])


# -- the stale-key stages ------------------------------------------------------------


class Stage(StrEnum):
    """What the policies do to a key, in the order a scan does it."""

    #: Active, without an expiry, under a lifetime policy (not changed: reported).
    NO_EXPIRY = "no_expiry"
    #: Active, expiring later than its creation + the maximum (not changed: reported).
    BEYOND_MAX = "beyond_max"
    #: Disabled by the stale-key policy M days ago or more: revoked.
    REVOKE = "revoke"
    #: No activity for N days: disabled (``stale_disable``).
    DISABLE = "disable"
    #: No activity for N days, the policy only reports (no ``stale_disable``).
    REPORT = "report"
    #: No activity for N-7 days: ``key.unused``.
    WARN = "warn"


STAGE_DESCRIPTIONS: Final = {
    Stage.NO_EXPIRY: "active keys without an expiry (not changed by the policy: only new "
    "or changed keys are held to it)",
    Stage.BEYOND_MAX: "active keys that expire later than the maximum lifetime allows "
    "(not changed by the policy)",
    Stage.REVOKE: "revoked at the next scan (disabled as stale for the revoke period)",
    Stage.DISABLE: "disabled at the next scan (no activity for the stale period)",
    Stage.REPORT: "stale (no activity for the stale period); the policy only reports them",
    Stage.WARN: "warned at the next scan (key.unused): no activity for 7 days less than "
    "the stale period",
}


def last_activity(key: ApiKey) -> datetime:
    """When the key was last used, else created, or last changed by a person, whichever
    is latest (``updated_at`` is at least ``created_at``)."""
    if key.last_used_at is not None and key.last_used_at > key.updated_at:
        return key.last_used_at
    return key.updated_at


def _inactive_since(cutoff: datetime) -> ColumnElement[bool]:
    # last_activity(key) < cutoff, written so the (organization_id, last_used_at) index serves.
    return and_(
        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < cutoff),
        ApiKey.updated_at < cutoff,
    )


def _live(organization_id: str, now: datetime) -> ColumnElement[bool]:
    return and_(
        ApiKey.organization_id == organization_id,
        ApiKey.revoked_at.is_(None),
        ApiKey.canary.is_(false()),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
    )


def stale_condition(
    stage: Stage, organization_id: str, policy: KeyPolicy, now: datetime, dialect: str
) -> ColumnElement[bool] | None:
    """The keys of ``organization_id`` in ``stage`` at ``now`` under ``policy`` (None: the
    policy has no such stage). Canary keys are never touched."""
    days = policy.stale_days
    live = _live(organization_id, now)
    if stage is Stage.NO_EXPIRY:
        if not policy.limits_lifetime:
            return None
        return and_(live, ApiKey.expires_at.is_(None))
    if stage is Stage.BEYOND_MAX:
        if policy.max_lifetime_seconds is None:
            return None
        return and_(live, _lifetime_over(policy.max_lifetime_seconds, dialect))
    if days is None:
        return None
    if stage is Stage.REVOKE:
        if policy.stale_revoke_days is None or not policy.stale_disable:
            return None
        return and_(
            live,
            ApiKey.enabled.is_(false()),
            ApiKey.disabled_reason == STALE,
            ApiKey.disabled_at <= now - timedelta(days=policy.stale_revoke_days),
        )
    if stage in (Stage.DISABLE, Stage.REPORT):
        if policy.stale_disable != (stage is Stage.DISABLE):
            return None
        return and_(live, ApiKey.enabled.is_(true()), _inactive_since(now - timedelta(days=days)))
    # WARN: between N-7 and N days, or past N when the policy only reports.
    warned = and_(
        live, ApiKey.enabled.is_(true()), _inactive_since(now - timedelta(days=days - WARNING_DAYS))
    )
    if policy.stale_disable:
        return and_(warned, ~_inactive_since(now - timedelta(days=days)))
    return warned


def _lifetime_over(seconds: int, dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        span = func.julianday(ApiKey.expires_at) - func.julianday(ApiKey.created_at)
        return and_(ApiKey.expires_at.is_not(None), span * DAY > seconds + 1)
    return and_(
        ApiKey.expires_at.is_not(None),
        ApiKey.expires_at > ApiKey.created_at + literal(timedelta(seconds=seconds), Interval()),
    )


# -- the service -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TouchedKey:
    """A key a dry run would touch."""

    id: str
    name: str
    hint: str
    project_id: str
    expires_at: datetime | None
    last_activity: datetime
    #: When the policy acts on it (the warning: when it will be disabled or reported).
    acts_at: datetime | None


@dataclass(frozen=True, slots=True)
class DryRunGroup:
    action: Stage
    description: str
    total: int
    keys: tuple[TouchedKey, ...]


@dataclass(frozen=True, slots=True)
class DryRun:
    policy: KeyPolicy
    at: datetime
    groups: tuple[DryRunGroup, ...]


class KeyPolicyService:
    """Reading, changing and previewing an organization's key policies."""

    def __init__(
        self, database: Database, *, clock: Callable[[], datetime], sudo: SudoRule
    ) -> None:
        self._database = database
        self._clock = clock
        self.sudo = sudo

    def policy(self, caller: Caller) -> KeyPolicy:
        access.require_manager(caller, "read the organization's key policies")
        with self._database.read() as session:
            return policy_of(session, caller.organization_id)

    def lifetime(self, caller: Caller) -> KeyPolicy:
        """Only the lifetime policy, for anyone of the organization (the create dialog
        of a member follows it)."""
        with self._database.read() as session:
            policy = policy_of(session, caller.organization_id)
        return KeyPolicy(policy.max_lifetime_seconds, policy.default_expiry_seconds)

    def set_policy(self, caller: Caller, policy: KeyPolicy) -> KeyPolicy:
        """Replace the policies; audited as ``organization.key_policy_changed`` (with the
        old and new values) when anything changed."""
        check_policy(policy)
        return self._change(caller, lambda _before: policy)

    def update_policy(self, caller: Caller, changes: Mapping[str, Any]) -> KeyPolicy:
        """Change the fields in ``changes`` (names of :class:`KeyPolicy`), keep the rest."""
        _check_fields(changes)
        return self._change(caller, lambda before: replace(before, **changes))

    def _change(self, caller: Caller, change: Callable[[KeyPolicy], KeyPolicy]) -> KeyPolicy:
        access.require_manager(caller, "change the organization's key policies")
        self.sudo.require(caller, "change the organization's key policies")
        now = self._clock()
        with self._database.write() as session:
            organization = session.scalar(
                select(Organization)
                .where(Organization.id == caller.organization_id)
                .with_for_update(key_share=True)
            )
            if organization is None:
                raise ObjectNotFound("organization", caller.organization_id)
            before = policy_of(session, caller.organization_id)
            policy = check_policy(change(before))
            if before == policy:
                return policy
            organization.key_max_lifetime = policy.max_lifetime_seconds
            organization.key_default_expiry = policy.default_expiry_seconds
            organization.stale_key_days = policy.stale_days
            organization.stale_key_disable = policy.stale_disable
            organization.stale_key_revoke_days = policy.stale_revoke_days
            record_by(
                session,
                caller,
                "organization.key_policy_changed",
                ("organization", caller.organization_id),
                at=now,
                details={"from": asdict(before), "to": asdict(policy)},
            )
        return policy

    def dry_run(
        self,
        caller: Caller,
        proposed: KeyPolicy | Mapping[str, Any],
        *,
        now: datetime | None = None,
    ) -> DryRun:
        """The existing keys ``proposed`` (not saved; a mapping changes only the fields it
        names) would touch, per action: the first :data:`DRY_RUN_LIMIT` of each (least
        recently changed first) and how many in all. Nothing is written."""
        access.require_manager(caller, "preview the organization's key policies")
        if not isinstance(proposed, KeyPolicy):
            _check_fields(proposed)
        now = now or self._clock()
        groups: list[DryRunGroup] = []
        with self._database.read() as session:
            policy = check_policy(
                proposed
                if isinstance(proposed, KeyPolicy)
                else replace(policy_of(session, caller.organization_id), **proposed)
            )
            dialect = session.get_bind().dialect.name
            for stage in Stage:
                condition = stale_condition(stage, caller.organization_id, policy, now, dialect)
                if condition is None:
                    continue
                total = session.scalar(select(func.count()).select_from(ApiKey).where(condition))
                rows = session.scalars(
                    select(ApiKey)
                    .where(condition)
                    .order_by(ApiKey.updated_at, ApiKey.pk)
                    .limit(DRY_RUN_LIMIT)
                ).all()
                keys = tuple(_touched(row, stage, policy, now) for row in rows)
                groups.append(DryRunGroup(stage, STAGE_DESCRIPTIONS[stage], total or 0, keys))
        return DryRun(policy, now, tuple(groups))


def _touched(row: ApiKey, stage: Stage, policy: KeyPolicy, now: datetime) -> TouchedKey:
    acts_at: datetime | None = None
    if stage is Stage.WARN and policy.stale_days is not None:
        acts_at = last_activity(row) + timedelta(days=policy.stale_days)
    elif stage in (Stage.DISABLE, Stage.REVOKE, Stage.REPORT):
        acts_at = now
    return TouchedKey(
        id=row.id,
        name=row.name,
        hint=row.hint,
        project_id=row.project_id,
        expires_at=row.expires_at,
        last_activity=last_activity(row),
        acts_at=acts_at,
    )


def _check_fields(changes: Mapping[str, Any]) -> None:
    known = set(KeyPolicy.__dataclass_fields__)
    for name in changes:
        if name not in known:
            raise InvalidInput(f"{name[:60]!r} is not a key policy field", field=name[:60])


__all__ = [
    "STALE",
    "DryRun",
    "DryRunGroup",
    "KeyPolicy",
    "KeyPolicyService",
    "Stage",
    "TouchedKey",
    "check_policy",
    "lifetime_expiry",
    "policy_of",
    "stale_condition",
]
