"""Scopes: what a key may do.

A scope is ``resource:action`` (``keys:read``), possibly deeper
(``jobs:results:read``), lowercase. ``*`` grants everything and ``resource:*``
grants every scope under that resource. Service owners may use their own
scopes beside the ones Keyplane's management API checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from keyplane.core.errors import InvalidInput

ALL: Final = "*"
KEYS_READ: Final = "keys:read"
KEYS_WRITE: Final = "keys:write"
KEYS_VERIFY: Final = "keys:verify"
PROJECTS_READ: Final = "projects:read"
PROJECTS_WRITE: Final = "projects:write"
AUDIT_READ: Final = "audit:read"
WEBHOOKS_READ: Final = "webhooks:read"
WEBHOOKS_WRITE: Final = "webhooks:write"
POLICIES_READ: Final = "policies:read"
POLICIES_WRITE: Final = "policies:write"
EVENTS_READ: Final = "events:read"
JOBS_READ: Final = "jobs:read"
JOBS_WRITE: Final = "jobs:write"

MANAGEMENT_SCOPES: Final = (
    KEYS_READ,
    KEYS_WRITE,
    KEYS_VERIFY,
    PROJECTS_READ,
    PROJECTS_WRITE,
    AUDIT_READ,
    WEBHOOKS_READ,
    WEBHOOKS_WRITE,
    POLICIES_READ,
    POLICIES_WRITE,
    EVENTS_READ,
)
#: Scopes of the IonQ-compatible API (``/v0.4``).
JOB_SCOPES: Final = (JOBS_READ, JOBS_WRITE)
#: Every scope some Keyplane endpoint checks.
KNOWN_SCOPES: Final = MANAGEMENT_SCOPES + JOB_SCOPES
MAX_SCOPES: Final = 64
MAX_SCOPE_LENGTH: Final = 100

_SCOPE_RE: Final = re.compile(r"[a-z][a-z0-9_.-]*(:[a-z0-9_.-]+)*(:\*)?")


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Check every scope's syntax; return them in the order given."""
    if isinstance(scopes, str):
        raise InvalidInput("scopes is a list of strings, not one string", field="scopes")
    checked = []
    for scope in scopes:
        if not isinstance(scope, str) or len(scope) > MAX_SCOPE_LENGTH:
            raise InvalidInput(
                f"a scope is a string of at most {MAX_SCOPE_LENGTH} characters", field="scopes"
            )
        if scope != ALL and not _SCOPE_RE.fullmatch(scope):
            raise InvalidInput(
                f"{scope!r} is not a scope: use lowercase 'resource:action', 'resource:*' or '*'",
                field="scopes",
            )
        checked.append(scope)
    return tuple(checked)


def normalize_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Validate scopes and return them sorted and without duplicates."""
    result = set(validate_scopes(scopes))
    if len(result) > MAX_SCOPES:
        raise InvalidInput(f"a key holds at most {MAX_SCOPES} scopes", field="scopes")
    return tuple(sorted(result))


def grants(held: Iterable[str], required: str) -> bool:
    """True if the ``held`` scopes include ``required`` (directly or by wildcard)."""
    for scope in held:
        if scope in (ALL, required):
            return True
        if scope.endswith(":*") and required.startswith(scope[:-1]):
            return True
    return False


def missing(held: Iterable[str], required: Iterable[str]) -> tuple[str, ...]:
    """The required scopes that ``held`` does not grant, in the order asked."""
    held = tuple(held)
    return tuple(scope for scope in required if not grants(held, scope))
