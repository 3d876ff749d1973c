"""Memory per cached key: what 100,000 keys in the verification cache cost.

Builds ``KeyState`` values the way a cache miss does (``verifier._to_state``
on a stored row: two scopes, no allowlist, empty metadata, fresh strings for
ids and names), puts them in a ``KeyCache`` and, as a hit does, in the
verifier's reused VALID decisions and the hot path's whoami bodies. Reports
bytes per key from ``tracemalloc`` (Python allocations only) and the growth of
the process's resident set (measured on a separate fill, without tracemalloc).

    .venv/bin/python bench/memory.py [--keys 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import secrets
import sys
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from keyplane.api.schemas import WhoAmI
from keyplane.core.grant import Decision, GrantCode, KeyState
from keyplane.service.keys.cache import KeyCache
from keyplane.service.keys.verifier import _to_state


@dataclass
class Report:
    keys: int
    cache_bytes_per_key: float
    with_side_caches_bytes_per_key: float
    rss_growth_mb: float
    cache_bytes_at_default_size: float


def rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def row(number: int) -> tuple[object, ...]:
    now = datetime.now(UTC)
    return (
        f"key_{secrets.token_urlsafe(12)[:16]}",
        f"service key {number}",
        f"kp_...{secrets.token_hex(2)}",
        f"prj_{secrets.token_urlsafe(12)[:16]}",
        f"org_{secrets.token_urlsafe(12)[:16]}",
        ["keys:read", "projects:read"],
        True,
        None,
        now,
        [],
        {},
        None,
        60,
        None,
        None,
        0,
        "",
        False,  # canary
    )


def fill(keys: int) -> tuple[KeyCache, list[KeyState]]:
    cache = KeyCache(ttl=3600, max_size=keys)
    states = []
    for number in range(keys):
        state = _to_state(row(number))
        cache.put(secrets.token_hex(32), state, cache.generation())
        states.append(state)
    return cache, states


def run(keys: int = 100_000) -> Report:
    # Resident set first, without tracemalloc (whose own bookkeeping is large).
    gc.collect()
    rss_before = rss_bytes()
    untraced, untraced_states = fill(keys)
    gc.collect()
    rss_after = rss_bytes()
    del untraced, untraced_states
    gc.collect()
    tracemalloc.start()
    cache = KeyCache(ttl=3600, max_size=keys)
    hashes = [secrets.token_hex(32) for _ in range(keys)]
    base = tracemalloc.get_traced_memory()[0]
    states = []
    for number, key_hash in enumerate(hashes):
        state = _to_state(row(number))
        cache.put(key_hash, state, cache.generation())
        states.append(state)
    gc.collect()
    cache_only = tracemalloc.get_traced_memory()[0] - base
    decisions = {state.key_id: Decision(GrantCode.VALID, state) for state in states}
    bodies = {
        state.key_id: (state, WhoAmI.model_validate(state).model_dump_json().encode())
        for state in states
    }
    gc.collect()
    with_side = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    if len(cache) != keys or len(decisions) != keys or len(bodies) != keys:
        raise RuntimeError("not every key was cached")
    del states, decisions, bodies, cache
    per_key = cache_only / keys
    return Report(
        keys=keys,
        cache_bytes_per_key=round(per_key, 1),
        with_side_caches_bytes_per_key=round(with_side / keys, 1),
        rss_growth_mb=round((rss_after - rss_before) / 1e6, 1),
        cache_bytes_at_default_size=round(per_key * 10_000),
    )


def render(report: Report) -> str:
    return (
        f"Memory, {report.keys:,} cached keys: {report.cache_bytes_per_key:,.0f} B/key in the "
        f"cache, {report.with_side_caches_bytes_per_key:,.0f} B/key with the reused decisions "
        f"and whoami bodies; the cache alone grew RSS by {report.rss_growth_mb:,.1f} MB"
    )


def main(argv: Sequence[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    report = run(options.keys)
    print(json.dumps(asdict(report), indent=2) if options.json else render(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
