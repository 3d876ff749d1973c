"""Revocation propagation: revoke through instance A, time until instance B refuses.

Two ``keyplane serve`` instances (2 workers each) on one database: PostgreSQL
(LISTEN/NOTIFY, or Redis pub/sub with ``--redis``) or SQLite (the poller
only). For each of N keys: create it through A, warm it in every worker of B
(and A), revoke it through A, then ask B on fresh connections (so every
worker answers in turn) until 4 answers in a row are 401. The delay runs from
A's answer to the DELETE (the commit) to the first of those 4 refusals.

    .venv/bin/python bench/propagation.py --postgres URL [--redis URL] [--revocations 100]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

IN_A_ROW = 4
GIVE_UP_S = 10.0


@dataclass
class Report:
    database: str
    channel: str
    revocations: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    delays_ms: list[float]


def percentile(ordered: Sequence[float], quantile: float) -> float:
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


def run(*, revocations: int = 100, postgres: str | None = None, redis: str | None = None) -> Report:
    fresh = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)
    with tempfile.TemporaryDirectory(prefix="keyplane-propagation-") as name, ExitStack() as stack:
        directory = Path(name)
        if postgres:
            url = stack.enter_context(servers.postgres_schema(postgres))
        else:
            url = f"sqlite:///{directory / 'keyplane.db'}"
        project, management, _ = servers.keyplane_key(url, directory)
        extra = {"KEYPLANE_REDIS_URL": redis} if redis else {}
        a = stack.enter_context(servers.keyplane(url, directory, directory / "a.log", **extra))
        b = stack.enter_context(servers.keyplane(url, directory, directory / "b.log", **extra))
        manage = {"Authorization": f"Bearer {management}"}
        delays = []
        for number in range(revocations):
            created = fresh.post(
                f"{a}/api/v1/projects/{project}/keys", json={"name": f"p{number}"}, headers=manage
            ).json()
            headers = {"X-API-Key": created["key"]}
            for _ in range(8):  # fresh connections land on both workers of each instance
                for base in (a, b):
                    if fresh.get(f"{base}/api/v1/whoami", headers=headers).status_code != 200:
                        raise RuntimeError("a new key was refused before its revocation")
            if not fresh.delete(f"{a}/api/v1/keys/{created['id']}", headers=manage).is_success:
                raise RuntimeError("the revocation failed")
            revoked = time.perf_counter()
            streak, first_refusal = 0, 0.0
            while streak < IN_A_ROW:
                status = fresh.get(f"{b}/api/v1/whoami", headers=headers).status_code
                now = time.perf_counter()
                if status == 401:
                    if streak == 0:
                        first_refusal = now
                    streak += 1
                else:
                    streak = 0
                if now - revoked > GIVE_UP_S:
                    raise RuntimeError(f"B still accepted a revoked key after {GIVE_UP_S} s")
            delays.append((first_refusal - revoked) * 1000)
    ordered = sorted(delays)
    channel = "redis" if redis else ("listen/notify" if postgres else "poll")
    return Report(
        database="PostgreSQL" if postgres else "SQLite",
        channel=channel,
        revocations=revocations,
        p50_ms=statistics.median(ordered),
        p99_ms=percentile(ordered, 0.99),
        max_ms=ordered[-1],
        delays_ms=[round(delay, 2) for delay in delays],
    )


def render(report: Report) -> str:
    return (
        f"Revocation propagation, 2 instances x 2 workers on {report.database} "
        f"({report.channel}), {report.revocations} revocations: "
        f"p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, max {report.max_ms:.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revocations", type=int, default=100)
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    report = run(revocations=options.revocations, postgres=options.postgres, redis=options.redis)
    print(json.dumps(asdict(report), indent=2) if options.json else render(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
