"""Sign-in throttling: failed attempts counted per account and per client IP.

Built on the ``limits`` library's moving window. The default storage is in
memory (one process); a deployment with several instances passes a shared
storage (``limits.storage.RedisStorage``) so the counts add up across them.

A budget is checked before the password and counted after it failed, tens of
milliseconds of argon2 later. Without more, a burst of concurrent guesses
would all pass the check before the first failure is counted (15 guesses got
through a budget of 5). :meth:`LoginThrottle.attempt` holds the account's and
the IP's gates from the check until the attempt is counted, so in one process
attempts on one account (or from one IP) are checked one at a time; several
processes can together overshoot by at most one attempt each.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Final

from limits import RateLimitItem, parse
from limits.storage import Storage

from keyplane.config import LOGIN_ACCOUNT_LIMIT, LOGIN_IP_LIMIT
from keyplane.core.errors import TooManyAttempts
from keyplane.service.limits.shared_counters import AttemptCounter

#: Failed sign-ins one account may take in the window, whatever the source
#: (``KEYPLANE_LOGIN_ACCOUNT_LIMIT``).
ACCOUNT_LIMIT: Final = LOGIN_ACCOUNT_LIMIT
#: Failed sign-ins one client IP may make in the window, whatever the account
#: (``KEYPLANE_LOGIN_IP_LIMIT``).
IP_LIMIT: Final = LOGIN_IP_LIMIT


#: Gates (locks) shared by hash: enough that unrelated accounts rarely wait on each other.
_GATES: Final = 256
#: A gate held longer than this (a stuck database) refuses the attempt instead of queueing.
_GATE_TIMEOUT: Final = 30.0

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
        self._gates = [threading.Lock() for _ in range(_GATES)]

    @contextmanager
    def attempt(self, email: str, client_ip: str | None) -> Iterator[None]:
        """Check the budgets (:meth:`check`) and hold them until the block ends.

        The block checks the password and calls :meth:`failed` when it is wrong;
        a concurrent attempt on the same account or from the same IP waits here,
        then sees that failure counted.
        """
        budgets = self._budgets(email, client_ip)
        gates = sorted({_gate_of(identity) for _, identity in budgets})  # one order: no deadlock
        with ExitStack() as held:
            for index in gates:
                gate = self._gates[index]
                if not gate.acquire(timeout=_GATE_TIMEOUT):
                    raise TooManyAttempts(
                        1, "too many sign-in attempts at once; try again", code="SIGN_IN_BUSY"
                    )
                held.callback(gate.release)
            self._check(budgets)
            yield

    def check(self, email: str, client_ip: str | None) -> None:
        """Raise :class:`TooManyAttempts` if either budget is spent.

        Prefer :meth:`attempt`, which also keeps concurrent attempts from all
        passing this check before any failure is counted.
        """
        self._check(self._budgets(email, client_ip))

    def _check(self, budgets: list[tuple[RateLimitItem, str]]) -> None:
        for item, identity in budgets:
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


def _gate_of(identity: str) -> int:
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big") % _GATES
