"""In-process cost of one key verification, in microseconds per call.

Measures ``Services.verifier.verify`` directly (no HTTP, no event loop) for:

* ``hit``: the key is in the verification cache (TTL set far beyond the run);
* ``miss_sqlite``: the cache is off, every call is one indexed query on SQLite;
* ``miss_postgres``: the same on PostgreSQL, when a URL is given;
* ``garbage``: a key whose checksum is wrong: hashed, missed in the cache, never sent to storage.

Every accepted call also notes the use in the usage buffer (a dict assignment),
as the real verifier does; the background flusher is never started.

    .venv/bin/python bench/verify.py [--keys N] [--calls N] [--postgres URL] [--json]

See bench/README.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Final

import servers
from sqlalchemy import insert, text

from keyplane.config import Settings
from keyplane.core.grant import Decision, GrantCode
from keyplane.core.keys import BASE62_ALPHABET, KeyFormat
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import ApiKey

POSTGRES_ENV: Final = "KEYPLANE_TEST_POSTGRES_URL"
DEFAULT_KEYS: Final = 10_000
DEFAULT_MEMORY_CALLS: Final = 20_000  # hit and garbage: no storage involved
DEFAULT_STORAGE_CALLS: Final = 5_000  # misses: one query each
DEFAULT_WARMUP: Final = 1_000
#: Keys created through KeyService.create; the measured calls cycle through them.
MEASURED_KEYS: Final = 100
#: Cache TTL for the hit case, far beyond any run (Settings.from_env caps it at 1 s).
HIT_TTL: Final = 24 * 3600.0
CLIENT_IP: Final = ip_address("203.0.113.7")
USER_AGENT: Final = "keyplane-bench/1"
SEED: Final = 1234

Verify = Callable[[str], Decision]


@dataclass(frozen=True, slots=True)
class Options:
    keys: int
    calls: int | None
    warmup: int
    postgres: str | None
    json: bool


@dataclass(frozen=True, slots=True)
class Result:
    case: str
    backend: str
    calls: int
    p50_us: float
    p99_us: float
    mean_us: float


@dataclass(slots=True)
class Report:
    keys: int
    environment: dict[str, str]
    results: list[Result] = field(default_factory=list)
    #: The same loop around a call that does nothing: timer plus call overhead.
    harness_overhead_us: float = 0.0


# -- command line -------------------------------------------------------------


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description="In-process cost of one key verification (µs per call).",
    )
    parser.add_argument(
        "--keys",
        type=_positive,
        default=DEFAULT_KEYS,
        help=f"rows in api_keys (default {DEFAULT_KEYS:,}); the rest are bulk-inserted filler",
    )
    parser.add_argument(
        "--calls",
        type=_positive,
        default=None,
        help=(
            f"measured calls per case (default {DEFAULT_MEMORY_CALLS:,} for hit and garbage, "
            f"{DEFAULT_STORAGE_CALLS:,} for misses)"
        ),
    )
    parser.add_argument(
        "--warmup",
        type=_positive,
        default=DEFAULT_WARMUP,
        help=f"unmeasured calls before each case (default {DEFAULT_WARMUP:,})",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get(POSTGRES_ENV, "").strip() or None,
        help=f"also measure misses on this PostgreSQL (default ${POSTGRES_ENV}); "
        "a private schema is created and dropped",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    return Options(args.keys, args.calls, args.warmup, args.postgres, args.json)


def _positive(value: str) -> int:
    number = int(value.replace("_", "").replace(",", ""))
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


# -- database and keys --------------------------------------------------------


def base_settings(data_dir: Path, database_url: str) -> Settings:
    """Cache off: every verification reads storage (the miss case)."""
    return Settings(data_dir=data_dir, database_url=database_url, key_cache_size=0)


def variant(services: Services, **changes: Any) -> Services:
    """Another set of services (own cache and usage buffer) on the same database."""
    settings = replace(services.settings, **changes)
    return Services(settings, services.database, clock=services.clock)


@contextmanager
def opened(settings: Settings) -> Iterator[Services]:
    """Services without the usage flusher thread (``start`` is never called)."""
    services = Services.open(settings)
    try:
        yield services
    finally:
        services.close()


FILLER_BATCH = 50_000


def populate(services: Services, total: int) -> list[str]:
    """``total`` keys in api_keys; return the values of the ones created for real."""
    boot = services.bootstrap(
        organization_name="Bench", project_name="Default", owner_email="bench@keyplane.test"
    )
    organization_id = boot.accounts.organization.id
    project_id = boot.accounts.project.id
    measured = max(1, min(MEASURED_KEYS, total - 1))
    insert_filler(services, organization_id, project_id, total - 1 - measured)
    caller = Caller(organization_id, ("*",), Actor.operator())
    keys = [
        services.keys.create(
            caller, project_id, name=f"bench {index}", scopes=["keys:read", "projects:read"]
        ).secret.reveal()
        for index in range(measured)
    ]
    random.Random(SEED).shuffle(keys)
    return keys


def insert_filler(services: Services, organization_id: str, project_id: str, count: int) -> None:
    """``count`` ApiKey rows, random hashes nobody will present: COPY on PostgreSQL,
    batches of 50,000 through one ``executemany`` each on SQLite (a million in seconds)."""
    if count <= 0:
        return
    now = services.clock()
    if not services.database.is_sqlite:
        copy_filler(services, organization_id, project_id, count)
        return
    for start in range(0, count, FILLER_BATCH):
        rows = [
            {
                "id": f"key_filler{index:010d}",
                "organization_id": organization_id,
                "project_id": project_id,
                "name": f"filler {index}",
                "key_hash": secrets.token_hex(32),
                "hint": "kp_...fill",
                "scopes": ["keys:read"],
                "ip_allowlist": [],
                "meta": {},
                "enabled": True,
                "created_at": now,
                "created_by": "operator",
                "updated_at": now,
            }
            for index in range(start, min(count, start + FILLER_BATCH))
        ]
        with services.database.write() as session:
            session.execute(insert(ApiKey), rows)


def copy_filler(services: Services, organization_id: str, project_id: str, count: int) -> None:
    """The PostgreSQL bulk load: one COPY ... FROM STDIN, then ANALYZE."""
    columns = (
        "id, organization_id, project_id, name, key_hash, hint, scopes, ip_allowlist, "
        "metadata, enabled, created_at, created_by, updated_at, quota_used, quota_period"
    )
    now = services.clock()
    raw = services.database.engine.raw_connection()
    try:
        connection: Any = raw.driver_connection
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY api_keys ({columns}) FROM STDIN") as copy,
        ):
            for index in range(count):
                copy.write_row(
                    (
                        f"key_filler{index:010d}",
                        organization_id,
                        project_id,
                        f"filler {index}",
                        secrets.token_hex(32),
                        "kp_...fill",
                        '["keys:read"]',
                        "[]",
                        "{}",
                        True,
                        now,
                        "operator",
                        now,
                        0,
                        "",
                    )
                )
        connection.execute("ANALYZE api_keys")
        connection.commit()
    finally:
        raw.close()


def garbage_keys(key_format: KeyFormat, keys: Sequence[str]) -> list[str]:
    """Each key with its last checksum character changed: right shape, wrong checksum."""
    result = []
    for key in keys:
        last = BASE62_ALPHABET.index(key[-1])
        bad = key[:-1] + BASE62_ALPHABET[(last + 1) % len(BASE62_ALPHABET)]
        if key_format.is_key(bad):  # cannot happen: the checksum is a function of the rest
            raise RuntimeError("a corrupted key still passed the checksum")
        result.append(bad)
    return result


# -- measuring ----------------------------------------------------------------


def verifier_call(services: Services) -> Verify:
    """The call the API's authentication makes (client IP and user agent given)."""
    verify = services.verifier.verify

    def call(key: str) -> Decision:
        return verify(key, client_ip=CLIENT_IP, user_agent=USER_AGENT)

    return call


def time_calls(call: Callable[[str], object], keys: Sequence[str], calls: int) -> list[int]:
    """Nanoseconds of each of ``calls`` calls, cycling through ``keys``."""
    clock = time.perf_counter_ns
    count = len(keys)
    samples = [0] * calls
    gc.collect()
    for index in range(calls):
        key = keys[index % count]
        start = clock()
        call(key)
        samples[index] = clock() - start
    return samples


def measure(
    case: str, backend: str, call: Callable[[str], object], keys: Sequence[str], options: Options
) -> Result:
    calls = options.calls or (
        DEFAULT_STORAGE_CALLS if case.startswith("miss") else DEFAULT_MEMORY_CALLS
    )
    for index in range(options.warmup):
        call(keys[index % len(keys)])
    return summarize(case, backend, time_calls(call, keys, calls))


def summarize(case: str, backend: str, samples: list[int]) -> Result:
    ordered = sorted(samples)
    return Result(
        case=case,
        backend=backend,
        calls=len(ordered),
        p50_us=_percentile(ordered, 0.50) / 1000,
        p99_us=_percentile(ordered, 0.99) / 1000,
        mean_us=sum(ordered) / len(ordered) / 1000,
    )


def _percentile(ordered: Sequence[int], quantile: float) -> int:
    """Nearest-rank percentile of sorted samples."""
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


def expect(call: Verify, keys: Sequence[str], code: GrantCode) -> None:
    """Check every key gives ``code`` before timing it (a fast wrong answer is no result)."""
    for key in keys:
        got = call(key).code
        if got is not code:
            raise RuntimeError(f"expected {code}, got {got}")


def check_counters(services: Services, before: tuple[int, int], hits: bool, misses: bool) -> None:
    """The cache saw only hits, only misses, or nothing at all, as the case means."""
    cache = services.cache
    gained_hits, gained_misses = cache.hits - before[0], cache.misses - before[1]
    if bool(gained_hits) != hits or bool(gained_misses) != misses:
        raise RuntimeError(f"unexpected cache traffic: {gained_hits} hits, {gained_misses} misses")


# -- the cases ----------------------------------------------------------------


def bench_hit(services: Services, keys: Sequence[str], options: Options) -> Result:
    cached = variant(services, key_cache_ttl=HIT_TTL, key_cache_size=max(len(keys), 10_000))
    call = verifier_call(cached)
    expect(call, keys, GrantCode.VALID)  # loads every key into the cache
    before = (cached.cache.hits, cached.cache.misses)
    result = measure("hit", "memory", call, keys, options)
    check_counters(cached, before, hits=True, misses=False)
    return result


def bench_miss(services: Services, keys: Sequence[str], options: Options, backend: str) -> Result:
    if services.settings.key_cache_size != 0:
        raise RuntimeError("the miss case needs the cache off")
    call = verifier_call(services)
    expect(call, keys, GrantCode.VALID)
    before = (services.cache.hits, services.cache.misses)
    result = measure(f"miss_{backend}", backend, call, keys, options)
    check_counters(services, before, hits=False, misses=True)
    return result


def bench_garbage(services: Services, keys: Sequence[str], options: Options) -> Result:
    call = verifier_call(services)
    garbage = garbage_keys(services.settings.key_format, keys)
    expect(call, garbage, GrantCode.NOT_FOUND)
    before = (services.cache.hits, services.cache.misses)
    verifier = services.verifier
    loads = 0
    real_load = verifier.load

    def counting_load(key_hash: str) -> object:
        nonlocal loads
        loads += 1
        return real_load(key_hash)

    verifier.load = counting_load  # type: ignore[method-assign,assignment]
    try:
        result = measure("garbage", "none", call, garbage, options)
    finally:
        del verifier.load
    # A garbage key is hashed and misses the cache (the checksum is checked on a miss
    # only), but it never reaches storage.
    check_counters(services, before, hits=False, misses=True)
    if loads:
        raise RuntimeError(f"{loads} garbage keys reached storage")
    return result


def harness_overhead(options: Options) -> float:
    """p50 µs of the timing loop around a call that does nothing."""
    samples = time_calls(lambda key: None, ["x"], options.calls or DEFAULT_MEMORY_CALLS)
    return summarize("overhead", "none", samples).p50_us


# -- running and reporting ----------------------------------------------------


def run_sqlite(options: Options, report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="keyplane-bench-") as directory:
        path = Path(directory)
        with opened(base_settings(path, f"sqlite:///{path / 'keyplane.db'}")) as services:
            keys = populate(services, options.keys)
            report.results.append(bench_hit(services, keys, options))
            report.results.append(bench_miss(services, keys, options, "sqlite"))
            report.results.append(bench_garbage(services, keys, options))


def run_postgres(options: Options, report: Report, url: str) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="keyplane-bench-") as directory,
        servers.postgres_schema(url) as schema_url,
        opened(base_settings(Path(directory), schema_url)) as services,
    ):
        with services.database.engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar_one()
        report.environment["postgresql"] = str(version)
        keys = populate(services, options.keys)
        report.results.append(bench_miss(services, keys, options, "postgres"))


def environment() -> dict[str, str]:
    return {
        "cpu": cpu_model(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def render(report: Report) -> str:
    env = ", ".join(f"{name} {value}" for name, value in report.environment.items())
    lines = [
        f"Keyplane verification, in process ({env}); {report.keys:,} keys in the table",
        f"{'case':<16}{'calls':>8}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}",
    ]
    for result in report.results:
        lines.append(
            f"{result.case:<16}{result.calls:>8,}{result.p50_us:>10.2f}"
            f"{result.p99_us:>10.2f}{result.mean_us:>10.2f}"
        )
    lines.append(f"(timing loop overhead, not subtracted: {report.harness_overhead_us:.2f} µs)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Report:
    options = parse_options(argv)
    report = Report(keys=options.keys, environment=environment())
    report.harness_overhead_us = harness_overhead(options)
    run_sqlite(options, report)
    if options.postgres:
        run_postgres(options, report, options.postgres)
    if options.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(render(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
