"""Moving-window attempt counters shared between processes when they can be.

The brute-force limits (failed keys per client IP, failed sign-ins per account
and per IP) count on a shared ``limits`` storage (Redis, when
``KEYPLANE_REDIS_URL`` is set) so that every process and instance sees the
same count. If that storage fails, a Redis outage must not turn sign-ins or
bad keys into 500s: the counter goes on in this process's memory, as it would
without Redis, and says so in the log at most once a minute.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from limits import RateLimitItem
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from limits.util import WindowStats

from keyplane.logs import Throttled

logger = logging.getLogger("keyplane.security")

#: Seconds between two warnings about the shared storage.
WARN_EVERY: Final = 60.0


class AttemptCounter:
    """``hit``/``test``/``get_window_stats``/``clear`` of a moving window, shared if possible."""

    def __init__(self, shared: Storage | None = None) -> None:
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = MovingWindowRateLimiter(shared) if shared is not None else None
        self._warnings = Throttled(logger, WARN_EVERY)

    def hit(self, item: RateLimitItem, identity: str) -> bool:
        """Count one attempt; False if it was one too many."""
        result: bool = self._call("hit", item, identity)
        return result

    def test(self, item: RateLimitItem, identity: str) -> bool:
        """True if one more attempt would still be within the limit."""
        result: bool = self._call("test", item, identity)
        return result

    def get_window_stats(self, item: RateLimitItem, identity: str) -> WindowStats:
        result: WindowStats = self._call("get_window_stats", item, identity)
        return result

    def clear(self, item: RateLimitItem, identity: str) -> None:
        self._local.clear(item, identity)
        if self._shared is not None:
            self._call("clear", item, identity)

    def _call(self, method: str, *args: Any) -> Any:
        if self._shared is not None:
            try:
                return getattr(self._shared, method)(*args)
            except Exception as error:  # the shared storage is down: count here instead
                self._warnings.warning(
                    "shared",
                    "the shared attempt counters are unavailable (%s); counting in this "
                    "process until they return",
                    type(error).__name__,
                )
        return getattr(self._local, method)(*args)
