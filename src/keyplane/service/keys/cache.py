"""A bounded, in-process cache of verified keys, by key hash.

A change made through this process invalidates its entry at once; a change
made by another process reaches this cache through the change feed
(``service/invalidation.py``), which also vouches for the whole cache: when
it has not heard from storage for ``sync_bound`` seconds (a dropped
connection, a stuck poll), every entry counts as stale until it has. Without
a running feed (tests, the admin CLI) entries simply live ``ttl`` seconds.
Least recently used entries go first when the cache is full. Holds
:class:`KeyState` values, which contain no secret.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from keyplane.core.grant import KeyState


class KeyCache:
    def __init__(
        self, *, ttl: float, max_size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, KeyState]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        #: Entries are usable until this clock reading; the change feed moves it on.
        self._fresh_until = float("inf")
        self.hits = 0
        self.misses = 0

    def get(self, key_hash: str) -> KeyState | None:
        """The cached state, or None when absent, older than the TTL or not vouched for.

        Lock-free: each dict operation is atomic, a concurrent invalidation makes
        this look-up return what it would have a moment earlier, and ``put`` (which
        must compare generations) takes the lock. The counters are approximate.
        """
        entry = self._entries.get(key_hash)
        now = self._clock()
        if entry is None or now - entry[0] >= self.ttl or now >= self._fresh_until:
            self.misses += 1
            return None
        try:  # noqa: SIM105 - a try is cheaper than contextlib.suppress on the hot path
            self._entries.move_to_end(key_hash)
        except KeyError:  # evicted or invalidated meanwhile: still this look-up's answer
            pass
        self.hits += 1
        return entry[1]

    def synced(self, at: float, bound: float) -> None:
        """Storage's changes up to clock reading ``at`` are applied: trust entries until
        ``at + bound``. The change feed calls it after every successful poll."""
        self._fresh_until = at + bound

    def unsynced(self) -> None:
        """Back to plain TTL expiry (the change feed stopped)."""
        self._fresh_until = float("inf")

    def generation(self) -> int:
        """A number that changes with every invalidation; take it before reading storage."""
        return self._generation

    def put(self, key_hash: str, state: KeyState, generation: int) -> None:
        """Cache ``state`` unless an invalidation happened since ``generation`` was taken.

        A look-up that read storage just before a revocation committed would
        otherwise cache the old state after the revocation dropped it.
        """
        if self.max_size <= 0 or self.ttl <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._entries[key_hash] = (self._clock(), state)
            self._entries.move_to_end(key_hash)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def invalidate(self, key_hash: str) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(key_hash, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
