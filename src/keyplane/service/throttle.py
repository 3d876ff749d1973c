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
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from keyplane.core.errors import KeyplaneError

#: Failed sign-ins one account may take in the window, whatever the source.
ACCOUNT_LIMIT: Final = "5 per 5 minutes"
#: Failed sign-ins one client IP may make in the window, whatever the account.
IP_LIMIT: Final = "20 per 5 minutes"


class TooManyAttempts(KeyplaneError):
    """Sign-in is refused for now; ``retry_after`` is the wait in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-in attempts; try again in {retry_after} s")
        self.retry_after = retry_after


class LoginThrottle:
    def __init__(
        self,
        storage: Storage | None = None,
        *,
        account_limit: str = ACCOUNT_LIMIT,
        ip_limit: str = IP_LIMIT,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage or MemoryStorage())
        self._account: RateLimitItem = parse(account_limit)
        self._ip: RateLimitItem = parse(ip_limit)

    def check(self, email: str, client_ip: str | None) -> None:
        """Raise :class:`TooManyAttempts` if either budget is spent."""
        for item, identity in self._budgets(email, client_ip):
            if not self._limiter.test(item, identity):
                reset_at = self._limiter.get_window_stats(item, identity).reset_time
                raise TooManyAttempts(max(1, math.ceil(reset_at - time.time())))

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
