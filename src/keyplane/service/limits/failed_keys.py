"""Failed key attempts, limited per client IP.

A client that sends more bad keys than ``KEYPLANE_FAILED_KEY_LIMIT`` (default
20 a minute) is refused with ``TooManyAttempts`` (429) until its window frees
up, whatever key it sends: a guesser learns nothing more. Each such burst is
written once to the ``keyplane.security`` log, when it starts, not per request.

Valid keys do not pay for this: a request is checked against a small
in-process table of blocked addresses (a dict look-up); only a *failed*
attempt touches the ``limits`` storage (in memory by default; pass a shared
storage such as Redis so that several processes count together).

How a face uses it (``api/dependencies.py`` ``authenticate`` does exactly this)::

    limiter.check(ip)                    # raises TooManyAttempts while ip is blocked
    decision = verifier.verify(...)
    if decision.code in UNAUTHENTICATED_CODES:
        limiter.failed(ip)               # raises TooManyAttempts once the budget is spent
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Final

from limits import RateLimitItem, parse
from limits.storage import Storage

from keyplane.core.errors import TooManyAttempts
from keyplane.core.network import IPAddress
from keyplane.service.limits.shared_counters import AttemptCounter

logger = logging.getLogger("keyplane.security")

CODE: Final = "TOO_MANY_FAILED_KEYS"
#: Addresses remembered as blocked at once in one process; beyond, the oldest go.
MAX_BLOCKED: Final = 100_000


class FailedKeyLimiter:
    """Counts failed key attempts per client IP and refuses a source that spent its budget."""

    def __init__(
        self,
        limit: str,
        storage: Storage | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._item: RateLimitItem = parse(limit)
        self._limiter = AttemptCounter(storage)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: ip -> monotonic time its block ends (this process's view).
        self._blocked: dict[str, float] = {}

    @property
    def limit(self) -> str:
        return str(self._item)

    def check(self, client_ip: IPAddress | str | None) -> None:
        """Raise :class:`TooManyAttempts` if ``client_ip`` is blocked; costs a dict look-up."""
        if client_ip is None or not self._blocked:
            return
        ip = str(client_ip)
        until = self._blocked.get(ip)
        if until is None:
            return
        left = until - self._monotonic()
        if left > 0:
            raise self._refusal(left)
        with self._lock:
            if self._blocked.get(ip) == until:
                del self._blocked[ip]

    def failed(self, client_ip: IPAddress | str | None) -> None:
        """Count one failed attempt; raise :class:`TooManyAttempts` if it was one too many.

        An unknown client IP (no socket peer) is not counted: there is nothing to
        key the count on, and one shared bucket would let anyone lock everyone out.
        """
        if client_ip is None:
            return
        ip = str(client_ip)
        identity = f"keyplane-failed-key/{ip}"
        if self._limiter.hit(self._item, identity):
            return
        reset_at = self._limiter.get_window_stats(self._item, identity).reset_time
        wait = max(1.0, reset_at - time.time())
        with self._lock:
            first = ip not in self._blocked
            if len(self._blocked) >= MAX_BLOCKED and first:
                self._blocked.pop(next(iter(self._blocked)))
            self._blocked[ip] = self._monotonic() + wait
        if first:
            # One line per burst, when it starts: the audit trail of a brute force.
            logger.warning(
                "failed-key limit reached: client %s sent more than %s bad API keys; "
                "refusing its key attempts for %d s",
                ip,
                self._item,
                math.ceil(wait),
            )
        raise self._refusal(wait)

    def unblock(self, client_ip: IPAddress | str) -> None:
        """Forget ``client_ip``'s failures and block (in this process and the storage)."""
        ip = str(client_ip)
        with self._lock:
            self._blocked.pop(ip, None)
        self._limiter.clear(self._item, f"keyplane-failed-key/{ip}")

    @staticmethod
    def _refusal(wait: float) -> TooManyAttempts:
        seconds = max(1, math.ceil(wait))
        return TooManyAttempts(
            seconds,
            f"Too many invalid API keys from this address. Try again in {seconds} s.",
            code=CODE,
        )
