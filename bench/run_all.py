"""Every Keyplane benchmark in one run: in-process verification and requests through
the served app, HTTP against the peers, revocation propagation and cache memory.
See bench/README.md.

    .venv/bin/python bench/run_all.py [--quick] [--postgres URL] [--redis URL] [--json FILE]

``--quick`` shrinks every part (20,000 keys instead of 1,000,000, 1 HTTP round of
2 s instead of 3 of 10 s, 10 revocations instead of 100) to check the harness
end to end in about two minutes; its figures are not results. PostgreSQL
defaults to ``$KEYPLANE_TEST_POSTGRES_URL``; without one, the PostgreSQL miss
is skipped and propagation runs on SQLite (the poller).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asgi
import http_load
import memory
import propagation
import verify
import webhook_latency


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small and short: a harness check")
    parser.add_argument(
        "--postgres", default=os.environ.get("KEYPLANE_TEST_POSTGRES_URL", "").strip() or None
    )
    parser.add_argument("--redis", default=None, help="also time propagation over Redis")
    parser.add_argument("--no-peer", action="store_true", help="leave drf-api-key out")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    options = parser.parse_args(argv)
    quick = options.quick
    results: dict[str, Any] = {"quick": quick}

    print("== 1. in-process verification ==", flush=True)
    arguments = ["--keys", "20000" if quick else "1000000"]
    if quick:
        arguments += ["--calls", "2000", "--warmup", "200"]
    if options.postgres:
        arguments += ["--postgres", options.postgres]
    results["verify"] = asdict(verify.main(arguments))

    print("\n== 1b. in-process whoami and verify through the served app ==", flush=True)
    calls = ["--calls", "2000", "--rounds", "1"] if quick else ["--calls", "10000", "--rounds", "3"]
    results["asgi"] = [asdict(result) for result in asgi.main(calls)]

    print("\n== 2. HTTP: Keyplane, the bare-ASGI ceiling, drf-api-key ==", flush=True)
    report = http_load.run(
        rounds=1 if quick else 3,
        duration=2 if quick else 10,
        warmup=1 if quick else 2,
        postgres=None,
        peer=not options.no_peer,
    )
    print(http_load.render(report), flush=True)
    results["http"] = asdict(report)

    print("\n== 3. revocation propagation ==", flush=True)
    revocations = 10 if quick else 100
    spread = propagation.run(revocations=revocations, postgres=options.postgres)
    print(propagation.render(spread), flush=True)
    results["propagation"] = [asdict(spread)]
    if options.redis and options.postgres:
        over_redis = propagation.run(
            revocations=revocations, postgres=options.postgres, redis=options.redis
        )
        print(propagation.render(over_redis), flush=True)
        results["propagation"].append(asdict(over_redis))

    print("\n== 4. memory of the key cache ==", flush=True)
    footprint = memory.run(20_000 if quick else 100_000)
    print(memory.render(footprint), flush=True)
    results["memory"] = asdict(footprint)

    print("\n== 5. revocation to webhook delivery ==", flush=True)
    delivered = webhook_latency.run(revocations=10 if quick else 100, postgres=options.postgres)
    print(webhook_latency.render(delivered), flush=True)
    results["webhooks"] = asdict(delivered)

    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
