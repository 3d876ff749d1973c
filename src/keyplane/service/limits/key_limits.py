"""Per-key rate limits and usage quotas, applied after the grant rule.

**Rate limits** use the ``limits`` library's sliding-window counter. With
``KEYPLANE_REDIS_URL`` its counters live in Redis, so every instance and
worker shares them; without, each process counts on its own (in memory).

**Quotas** are durable: every use counted against a quota is written behind
by the usage buffer as ``quota_used = quota_used + n`` (one statement per key
per flush). The live count is

* with Redis: one shared counter per key and period, seeded from the stored
  count when absent (``SET NX``) and incremented atomically by a Lua script,
  so all instances admit exactly ``limit`` uses (a Redis restart falls back
  to the stored count, which lags by at most one flush interval);
* without: this process's count (the stored count when the key was loaded,
  refreshed after each flush, plus its own uses). Other processes' uses are
  seen after their next flush (1 s), so N processes can together admit up to
  about N x (uses per second per process) over the quota before they stop.

When Redis fails, a request is not refused for it: the rate limit is skipped
and the quota falls back to this process's count; a warning is logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime
from typing import Any, Final

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from keyplane.core import quotas
from keyplane.core.grant import Allowance, GrantCode, KeyState
from keyplane.logs import Throttled
from keyplane.service.limits.usage import UsageBuffer
from keyplane.storage.redis import redis_client

logger = logging.getLogger("keyplane.limits")

_QUOTA_SCRIPT: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3])
local used = tonumber(redis.call('GET', KEYS[1]))
if used >= tonumber(ARGV[2]) then
  return {0, used}
end
return {1, redis.call('INCR', KEYS[1])}
"""
#: How long a shared quota counter outlives its period (a never-refilling one: a week
#: idle, then it is seeded again from the stored count).
_COUNTER_GRACE: Final = 7 * 86_400
#: Keys whose quota count this process keeps; past it, it starts over from storage.
_MAX_KNOWN: Final = 100_000


class Limiter:
    def __init__(self, usage: UsageBuffer, *, redis_url: str | None = None) -> None:
        self._usage = usage
        self.shared = redis_url is not None
        storage: Storage
        if redis_url is None:
            storage = MemoryStorage()
        else:
            shared = storage_from_string(_limits_url(redis_url))
            if not isinstance(shared, Storage):  # pragma: no cover - redis:// is synchronous
                raise TypeError("expected a synchronous limits storage")
            storage = shared
        self._storage = storage
        #: The Redis storage when one is configured, for the other shared counters.
        self.shared_storage: Storage | None = storage if redis_url is not None else None
        self._window = SlidingWindowCounterRateLimiter(storage)
        self._items: dict[tuple[int, int], RateLimitItem] = {}
        self._redis_url = redis_url
        self._redis: Any = None
        self._script: Any = None
        self._lock = threading.Lock()
        #: key id -> (period, uses known in it): stored count plus this process's uses.
        self._known: dict[str, tuple[str, int]] = {}
        self._warnings = Throttled(logger)
        usage.on_quota_stored = self._stored

    def check(
        self, key: KeyState, now: datetime
    ) -> tuple[GrantCode, Allowance | None, Allowance | None]:
        """VALID, RATE_LIMITED or USAGE_EXCEEDED for a key the grant rule accepted.

        Blocks on Redis when it is configured (``shared``): call it off the event loop.
        """
        rate = None
        if key.rate_limit is not None:
            rate = self._hit_rate(key)
            if rate is not None and rate.remaining < 0:
                return GrantCode.RATE_LIMITED, Allowance(rate.limit, 0, rate.reset_at), None
        quota = None
        if key.quota_limit is not None:
            quota = self._use_quota(key, now)
            if quota.remaining < 0:
                return GrantCode.USAGE_EXCEEDED, rate, Allowance(quota.limit, 0, quota.reset_at)
        return GrantCode.VALID, rate, quota

    def _hit_rate(self, key: KeyState) -> Allowance | None:
        assert key.rate_limit is not None
        shape = (key.rate_limit, key.rate_limit_window)
        item = self._items.get(shape)
        if item is None:
            item = self._items.setdefault(shape, RateLimitItemPerSecond(*shape))
        try:
            allowed = self._window.hit(item, key.key_id)
            stats = self._window.get_window_stats(item, key.key_id)
        except Exception as error:  # a Redis outage must not refuse every request
            self._warn("rate limit", error)
            return None
        remaining = stats.remaining if allowed else -1
        return Allowance(key.rate_limit, remaining, stats.reset_time)

    def _use_quota(self, key: KeyState, now: datetime) -> Allowance:
        """Count one use; ``remaining`` is -1 when the quota was already used up."""
        assert key.quota_limit is not None
        limit = key.quota_limit
        period = quotas.period_of(key.quota_refill, now)
        end = quotas.period_end(key.quota_refill, now)
        reset_at = end.timestamp() if end is not None else None
        stored = quotas.used_in(period, key.quota_period, key.quota_used)
        used: int | None = None
        if self._redis_url is not None:
            used = self._use_shared(key.key_id, period, stored, limit, reset_at)
        with self._lock:
            known = self._known.get(key.key_id)
            if used is None:  # counted here
                base = max(stored, known[1]) if known and known[0] == period else stored
                if base >= limit:
                    return Allowance(limit, -1, reset_at)
                used = base + 1
            elif used < 0:  # the shared counter says it is used up
                return Allowance(limit, -1, reset_at)
            if len(self._known) >= _MAX_KNOWN and key.key_id not in self._known:
                self._known.clear()  # bounded; counts resume from the stored ones
            self._known[key.key_id] = (period, used)
        self._usage.use_quota(key.key_id, period)
        return Allowance(limit, limit - used, reset_at)

    def _use_shared(
        self, key_id: str, period: str, stored: int, limit: int, reset_at: float | None
    ) -> int | None:
        """The shared count after this use, -1 when used up, None if Redis failed."""
        expires = int((reset_at or time.time()) - time.time()) + _COUNTER_GRACE
        try:
            if self._script is None:
                self._redis = redis_client(self._redis_url)
                self._script = self._redis.register_script(_QUOTA_SCRIPT)
            admitted, used = self._script(
                keys=[f"keyplane:quota:{key_id}:{period or 'all'}"],
                args=[stored, limit, expires],
            )
        except Exception as error:
            self._warn("quota", error)
            return None
        return int(used) if admitted else -1

    def _stored(self, stored: dict[str, tuple[str, int]]) -> None:
        """After a flush: take in the stored counts, which include other processes' uses."""
        with self._lock:
            for key_id, (period, used) in stored.items():
                known = self._known.get(key_id)
                if known is None or known[0] != period:
                    continue
                self._known[key_id] = (period, max(known[1], used))

    def _warn(self, what: str, error: Exception) -> None:
        self._warnings.warning(
            what,
            "Redis failed while checking a %s (%s); not enforced on this request",
            what,
            type(error).__name__,
        )

    def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):  # best effort at shutdown
                self._redis.close()
            self._redis = None
            self._script = None


def _limits_url(redis_url: str) -> str:
    """The ``limits`` storage URL for a Keyplane Redis URL (``unix://`` is spelled differently)."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url
