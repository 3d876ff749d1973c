"""The events Keyplane tells people and webhooks about: the one catalogue.

An event type is a dotted name (``key.revoked``). Most are also audit actions
(``service/audit.py`` raises them in the change's transaction); the others come
from the scheduler (expiring, expired, unused, auto-disabled), the hot path
(quota, rate-limited, canary used) and the webhook worker. ``docs/events.md``
describes each one's payload.

Mail goes to the key's creator and the organization's owners and admins for
the types marked ``mailed`` (``user.`` types: to that person alone), unless a
person muted that type; every type can be sent to webhooks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from keyplane.core.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    description: str
    #: Mailed to the people concerned by default (each person may mute it).
    mailed: bool = False


_TYPES: Final = (
    EventType("key.created", "A key was created."),
    EventType("key.updated", "A key's name, scopes, expiry, limits or metadata changed."),
    EventType("key.revoked", "A key was revoked; it is refused from now on.", mailed=True),
    EventType("key.rolled", "A key was replaced by a new one (the old one may overlap)."),
    EventType("key.disabled", "A key was disabled (reversible)."),
    EventType("key.enabled", "A disabled key was enabled again."),
    EventType("key.expiring", "A key expires in 7 days or in 1 day.", mailed=True),
    EventType("key.expired", "A key reached its expiry and is refused from now on.", mailed=True),
    EventType(
        "key.unused",
        "A key has not been used for a while; the stale-key policy will act on it soon.",
        mailed=True,
    ),
    EventType("key.auto_disabled", "The stale-key policy disabled a key nobody used.", mailed=True),
    EventType(
        "key.auto_revoked",
        "The stale-key policy revoked a key that stayed disabled.",
        mailed=True,
    ),
    EventType("key.leaked", "A key was reported found in public and was revoked.", mailed=True),
    EventType("key.quota_warning", "A key used 80 % of its quota in this period.", mailed=True),
    EventType("key.quota_exhausted", "A key used all of its quota in this period.", mailed=True),
    EventType(
        "key.rate_limited",
        "A key was refused for its rate limit (at most one event per key every 15 minutes).",
    ),
    EventType(
        "key.canary_used",
        "Someone used a canary key: where it was planted has leaked.",
        mailed=True,
    ),
    EventType("member.added", "Someone joined the organization."),
    EventType("member.removed", "A member was removed from the organization.", mailed=True),
    EventType("member.role_changed", "A member's role changed.", mailed=True),
    EventType("invitation.created", "Someone was invited to the organization."),
    EventType("invitation.revoked", "An invitation was withdrawn."),
    EventType("user.password_changed", "A member's password was changed.", mailed=True),
    EventType("user.password_reset", "A member reset their password by e-mail.", mailed=True),
    EventType("user.factor_added", "A member added a second factor.", mailed=True),
    EventType("user.factor_removed", "A member removed a second factor.", mailed=True),
    EventType("organization.mfa_policy_changed", "The second-factor policy changed."),
    EventType("organization.sso_policy_changed", "The SSO-only policy changed."),
    EventType("organization.key_policy_changed", "A key policy changed."),
    EventType(
        "webhook.endpoint_disabled",
        "A webhook endpoint kept failing and was disabled.",
        mailed=True,
    ),
    EventType("webhook.test", "A test event, sent on request to one endpoint."),
)

EVENT_TYPES: Final = {event.name: event for event in _TYPES}
MAX_EVENT_FILTER: Final = len(EVENT_TYPES)


def is_event_type(name: str) -> bool:
    return name in EVENT_TYPES


def check_event_types(names: Iterable[str], field: str = "event_types") -> tuple[str, ...]:
    """Validate an event filter (a list of type names); sorted, without duplicates.

    ``key.*`` stands for every ``key.`` type; an empty list means every type.
    """
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise InvalidInput(f"{field} is a list of event type names", field=field)
    checked: set[str] = set()
    for name in names:
        if not isinstance(name, str):
            raise InvalidInput(f"{field} is a list of event type names", field=field)
        if name.endswith(".*") and any(t.startswith(name[:-1]) for t in EVENT_TYPES):
            checked.add(name)
            continue
        if name not in EVENT_TYPES:
            raise InvalidInput(
                f"{name[:60]!r} is not an event type; see GET /api/v1/event-types",
                field=field,
            )
        checked.add(name)
    return tuple(sorted(checked))


def matches(event_filter: Iterable[str], event_type: str) -> bool:
    """True if an endpoint with ``event_filter`` receives ``event_type``."""
    wanted = tuple(event_filter)
    if not wanted:
        return event_type != "webhook.test"  # a test goes only to the endpoint asked
    for name in wanted:
        if name == event_type or (name.endswith(".*") and event_type.startswith(name[:-1])):
            return True
    return False
