"""Sign-in throttling: failed attempts counted per account and per client IP.

Built on the ``limits`` library's moving window. The default storage is in
memory (one process); a deployment with several instances passes a shared
storage (``limits.storage.RedisStorage``) so the counts add up across them.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Final

from limits import RateLimitItem, parse
from limits.storage import Storage

from keyplane.config import LOGIN_ACCOUNT_LIMIT, LOGIN_IP_LIMIT
from keyplane.core.errors import TooManyAttempts
from keyplane.service.counters import AttemptCounter

#: Failed sign-ins one account may take in the window, whatever the source
#: (``KEYPLANE_LOGIN_ACCOUNT_LIMIT``).
ACCOUNT_LIMIT: Final = LOGIN_ACCOUNT_LIMIT
#: Failed sign-ins one client IP may make in the window, whatever the account
#: (``KEYPLANE_LOGIN_IP_LIMIT``).
IP_LIMIT: Final = LOGIN_IP_LIMIT


__all__ = ["ACCOUNT_LIMIT", "IP_LIMIT", "LoginThrottle", "TooManyAttempts"]


class LoginThrottle:
    def __init__(
        self,
        storage: Storage | None = None,
        *,
        account_limit: str = ACCOUNT_LIMIT,
        ip_limit: str = IP_LIMIT,
    ) -> None:
        self._limiter = AttemptCounter(storage)
        self._account: RateLimitItem = parse(account_limit)
        self._ip: RateLimitItem = parse(ip_limit)

    def check(self, email: str, client_ip: str | None) -> None:
        """Raise :class:`TooManyAttempts` if either budget is spent."""
        for item, identity in self._budgets(email, client_ip):
            if not self._limiter.test(item, identity):
                reset_at = self._limiter.get_window_stats(item, identity).reset_time
                wait = max(1, math.ceil(reset_at - time.time()))
                raise TooManyAttempts(
                    wait,
                    f"too many failed sign-in attempts; try again in {wait} s",
                    code="TOO_MANY_SIGN_IN_ATTEMPTS",
                )

    def failed(self, email: str, client_ip: str | None) -> None:
        """Count one failed attempt against the account and the IP."""
        for item, identity in self._budgets(email, client_ip):
            self._limiter.hit(item, identity)

    def _budgets(self, email: str, client_ip: str | None) -> list[tuple[RateLimitItem, str]]:
        # The storage may be shared (Redis): keep e-mail addresses out of its key names.
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        budgets = [(self._account, f"keyplane-login-account/{account}")]
        if client_ip:
            budgets.append((self._ip, f"keyplane-login-ip/{client_ip}"))
        return budgets
