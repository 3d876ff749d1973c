"""Key policies: the change (PATCH, and the dry run's proposal) and the answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, StrictBool, StrictInt

from keyplane.api.schemas.base import FromRecord, Strict

_MAX_LIFETIME = (
    "The longest a key may live, in seconds from its creation: 3600 (1 hour) to "
    "157680000 (5 years); null: no maximum. A key created without an expiry gets the "
    "default expiry, else is refused; an expiry past the maximum is refused."
)
_DEFAULT_EXPIRY = (
    "The expiry, in seconds from creation, of a key created without one: 3600 to "
    "157680000, at most max_lifetime_seconds; null: none."
)
_STALE_DAYS = (
    "A key with no activity (use, creation, or a person's change) for this many days is "
    "stale: 8 to 3650; warned (key.unused) 7 days before; null: no stale-key policy."
)
_STALE_DISABLE = "Disable stale keys (key.auto_disabled); false: only warn and report them."
_STALE_REVOKE = (
    "Revoke a key the policy disabled after this many more days (key.auto_revoked): 1 to "
    "3650; needs stale_disable; null: never."
)


# Fields left out keep their value (PATCH), or the saved value (the dry run).
class KeyPolicyChange(Strict):
    max_lifetime_seconds: StrictInt | None = Field(None, description=_MAX_LIFETIME)
    default_expiry_seconds: StrictInt | None = Field(None, description=_DEFAULT_EXPIRY)
    stale_days: StrictInt | None = Field(None, description=_STALE_DAYS)
    stale_disable: StrictBool = Field(False, description=_STALE_DISABLE)
    stale_revoke_days: StrictInt | None = Field(None, description=_STALE_REVOKE)


class KeyPolicyOut(FromRecord):
    max_lifetime_seconds: int | None = Field(description=_MAX_LIFETIME)
    default_expiry_seconds: int | None = Field(description=_DEFAULT_EXPIRY)
    stale_days: int | None = Field(description=_STALE_DAYS)
    stale_disable: bool = Field(description=_STALE_DISABLE)
    stale_revoke_days: int | None = Field(description=_STALE_REVOKE)


class TouchedKeyOut(FromRecord):
    id: str
    name: str
    hint: str
    project_id: str
    expires_at: datetime | None
    last_activity: datetime = Field(
        description="The key's last use, else its creation, or a person's last change."
    )
    acts_at: datetime | None = Field(
        description="When the policy acts: now for disable and revoke; for a warning, "
        "when the key becomes stale; null for the lifetime groups (keys are not changed)."
    )


class DryRunGroupOut(FromRecord):
    action: str = Field(
        description="no_expiry, beyond_max (lifetime: reported, not changed), revoke, "
        "disable, report or warn (the next scan)."
    )
    description: str
    total: int = Field(description="How many keys in all; `keys` lists the first 100.")
    keys: list[TouchedKeyOut]


class DryRunOut(FromRecord):
    policy: KeyPolicyOut = Field(description="The proposed policy (not saved).")
    at: datetime = Field(description="The time the preview was computed for.")
    groups: list[DryRunGroupOut]
