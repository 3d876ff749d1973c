"""A bounded, short-lived, in-process cache of verified keys, by key hash.

Entries live ``ttl`` seconds (at most 1 s by default), so a change made by
another process is seen within that time; a change made through this process
invalidates its entry at once. Least recently used entries go first when the
cache is full. Holds :class:`KeyState` values, which contain no secret.
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
        self.hits = 0
        self.misses = 0

    def get(self, key_hash: str) -> KeyState | None:
        """The cached state, or None when absent or older than the TTL."""
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None or self._clock() - entry[0] >= self.ttl:
                self.misses += 1
                return None
            self._entries.move_to_end(key_hash)
            self.hits += 1
            return entry[1]

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
