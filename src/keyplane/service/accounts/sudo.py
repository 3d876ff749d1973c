"""Sudo mode: a sensitive change needs a recent password (or factor) entry.

One rule, :meth:`SudoRule.require`, called by every service that makes such a
change (keys with management scopes, rolling and revoking, member roles and
removal, second factors, the organization's MFA policy; SSO settings later). A
person (a :class:`Caller` with a role) whose session's ``authenticated_at`` is
older than ``KEYPLANE_SUDO_TIMEOUT`` gets :class:`ReauthenticationRequired`
(403, problem type ``reauthentication-required``), which the console answers
by sending them to ``/console/sudo``. A key or the operator has no session: its
scopes alone decide, so the rule does not apply to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from keyplane.config import DEFAULT_SUDO_TIMEOUT
from keyplane.core import scopes as scope_rules
from keyplane.core.errors import ReauthenticationRequired
from keyplane.service.records import Caller

#: Scopes whose grant is a sensitive change: they let a key make more keys, send the
#: organization's events somewhere, or loosen its key policies.
SENSITIVE_SCOPES: Final = frozenset(
    {
        scope_rules.ALL,
        scope_rules.KEYS_WRITE,
        "keys:*",
        scope_rules.WEBHOOKS_WRITE,
        "webhooks:*",
        scope_rules.POLICIES_WRITE,
        "policies:*",
    }
)


@dataclass(frozen=True, slots=True)
class SudoRule:
    clock: Callable[[], datetime]
    timeout: timedelta = DEFAULT_SUDO_TIMEOUT

    def is_recent(self, caller: Caller) -> bool:
        if caller.role is None:
            return True
        at = caller.authenticated_at
        return at is not None and self.clock() - at < self.timeout

    def require(self, caller: Caller, action: str) -> None:
        """Raise :class:`ReauthenticationRequired` unless ``caller`` authenticated recently."""
        if not self.is_recent(caller):
            raise ReauthenticationRequired(action)

    def require_for_scopes(self, caller: Caller, scopes: Iterable[str]) -> None:
        if any(scope in SENSITIVE_SCOPES for scope in scopes):
            self.require(caller, "create a key that can manage keys")


__all__ = ["SENSITIVE_SCOPES", "ReauthenticationRequired", "SudoRule"]
