"""One key-policy scan over a large ``api_keys`` table: wall time and peak memory.

Fills a fresh database (SQLite by default; ``--postgres URL`` for a schema of its
own on PostgreSQL) with ``--keys`` keys over ten organizations, each with the
stale-key policy on (N = 90 days, disable, revoke 30 days later), in this mix:

==========================  ======  ==========================================
keys                        share   what the first scan does
==========================  ======  ==========================================
recently used               88 %    nothing
expiring in 1 to 7 days      2 %    ``key.expiring`` (7 days)
expired in the last week     1 %    ``key.expired``
idle 83 to 89 days           3 %    ``key.unused``
idle 91 days or more         3 %    ``key.auto_disabled`` (through KeyService)
disabled as stale 31+ days   1 %    ``key.auto_revoked`` (through KeyService)
revoked                      2 %    nothing
==========================  ======  ==========================================

Then a child process (so its peak RSS is the scan's, not the fill's) opens the
database, runs ``Scheduler.run_once`` twice at the same instant (the first scan
acts, the second finds everything done) and reports both times and its peak RSS.

    .venv/bin/python bench/policy_scan.py [--keys 1000000] [--postgres URL] [--json]

Not a test (``tests/bench/test_policy_scan_bench.py`` runs it small, no timing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, insert, select, text

from keyplane.config import Settings
from keyplane.service.events.policies import KeyPolicy
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage import migrate
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey, AuditEvent, Event

ORGANIZATIONS: Final = 10
BATCH: Final = 20_000
#: The scan's instant: fixed, so a run is reproducible.
NOW: Final = datetime(2027, 6, 1, tzinfo=UTC)
#: (share out of 100, what the key looks like) in order; the rest is "recently used".
MIX: Final = (
    (2, "expiring"),
    (1, "expired"),
    (3, "idle_warn"),
    (3, "idle_stale"),
    (1, "disabled_stale"),
    (2, "revoked"),
)


def _kind(index: int) -> str:
    slot = index % 100
    for share, kind in MIX:
        if slot < share:
            return kind
        slot -= share
    return "used"


def _row(index: int, organization_id: str, project_id: str) -> dict[str, Any]:
    kind = _kind(index)
    spread = timedelta(seconds=(index * 7919) % 86400)  # different times in one day
    created = NOW - timedelta(days=200) - spread
    row: dict[str, Any] = {
        "id": f"key_bench{index:011d}",
        "organization_id": organization_id,
        "project_id": project_id,
        "name": f"bench {index}",
        "key_hash": secrets.token_hex(32),
        "hint": "kp_...bnch",
        "scopes": [],
        "ip_allowlist": [],
        "meta": {},
        "enabled": True,
        "created_at": created,
        "created_by": "operator",
        "updated_at": created,
        "last_used_at": NOW - timedelta(days=index % 10) - spread,
        "expires_at": None,
        "quota_used": 0,
        "quota_period": "",
    }
    if kind == "expiring":
        row["expires_at"] = NOW + timedelta(days=1 + index % 6) + spread
    elif kind == "expired":
        row["expires_at"] = NOW - timedelta(days=index % 6) - spread - timedelta(seconds=1)
    elif kind == "idle_warn":
        row["last_used_at"] = NOW - timedelta(days=83 + index % 6) - spread
    elif kind == "idle_stale":
        row["last_used_at"] = NOW - timedelta(days=91 + index % 60) - spread
    elif kind == "disabled_stale":
        row["last_used_at"] = NOW - timedelta(days=150)
        row.update(
            enabled=False,
            disabled_reason="stale",
            disabled_at=NOW - timedelta(days=31 + index % 30),
            updated_at=NOW - timedelta(days=31 + index % 30),
        )
    elif kind == "revoked":
        row.update(revoked_at=NOW - timedelta(days=10), revoked_by="operator")
    return row


def fill(database_url: str, keys: int, data_dir: Path) -> dict[str, Any]:
    """Organizations with the policy, then ``keys`` rows in batches (bounded memory)."""
    started = time.perf_counter()
    services = Services.open(
        Settings(data_dir=data_dir, database_url=database_url), clock=lambda: NOW
    )
    try:
        targets = []
        for number in range(ORGANIZATIONS):
            boot = services.bootstrap(
                organization_name=f"Bench {number}",
                project_name="Default",
                owner_email=f"bench{number}@keyplane.test",
            )
            caller = Caller(boot.accounts.organization.id, ("*",), Actor.operator())
            services.key_policies.set_policy(
                caller, KeyPolicy(stale_days=90, stale_disable=True, stale_revoke_days=30)
            )
            targets.append((boot.accounts.organization.id, boot.accounts.project.id))
        # The management keys: used now, out of the picture.
        with services.database.write() as session:
            session.execute(ApiKey.__table__.update().values(last_used_at=NOW))
        for start in range(0, keys, BATCH):
            rows = [
                _row(index, *targets[index % ORGANIZATIONS])
                for index in range(start, min(keys, start + BATCH))
            ]
            with services.database.write() as session:
                session.execute(insert(ApiKey), rows)
        if not services.database.is_sqlite:
            with services.database.engine.begin() as connection:
                connection.execute(text("ANALYZE api_keys"))
    finally:
        services.close()
    return {"keys": keys, "fill_seconds": round(time.perf_counter() - started, 1)}


def scan(database_url: str, data_dir: Path) -> dict[str, Any]:
    """Two scans at :data:`NOW` in this process; their times, counts and the peak RSS."""
    services = Services.open(
        Settings(data_dir=data_dir, database_url=database_url), clock=lambda: NOW
    )
    try:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        first = services.scheduler.run_once(NOW)
        first_seconds = time.perf_counter() - started
        started = time.perf_counter()
        second = services.scheduler.run_once(NOW)
        second_seconds = time.perf_counter() - started
        with services.database.read() as session:
            events = session.scalar(select(func.count()).select_from(Event))
            audited = session.scalar(select(func.count()).select_from(AuditEvent))
    finally:
        services.close()
    return {
        "first_scan_seconds": round(first_seconds, 2),
        "first_scan": first.counts,
        "second_scan_seconds": round(second_seconds, 2),
        "second_scan": second.counts,
        "scans_ran": [first.ran, second.ran],
        "events_in_table": events,
        "audit_events_in_table": audited,
        "rss_before_scan_mib": round(rss_before / 1024, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _postgres_schema(base: str) -> str:
    schema = f"kp_bench_{os.getpid()}"
    admin = Database(base)
    with admin.engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}options=-csearch_path%3D{schema}"
    database = Database(url)
    migrate.upgrade(database.engine)
    database.dispose()
    return url


def run(keys: int, data_dir: Path, postgres: str | None = None) -> dict[str, Any]:
    """Fill, then scan in a child process; the figures of both."""
    url = _postgres_schema(postgres) if postgres else f"sqlite:///{data_dir / 'keyplane.db'}"
    report = {"database": "postgresql" if postgres else "sqlite", **fill(url, keys, data_dir)}
    child = subprocess.run(
        [sys.executable, __file__, "--scan-only", url, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(child.stderr)
    report.update(json.loads(child.stdout.strip().splitlines()[-1]))
    if postgres:
        schema = url.rsplit("%3D", 1)[1]
        admin = Database(postgres)
        with admin.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="a PostgreSQL URL (a schema of its own is made)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scan-only", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.scan_only:
        print(json.dumps(scan(arguments.scan_only, Path(arguments.data_dir))))
        return
    with tempfile.TemporaryDirectory(prefix="keyplane-policy-scan-") as directory:
        report = run(arguments.keys, Path(directory), arguments.postgres)
    if arguments.json:
        print(json.dumps(report, indent=2))
        return
    for name, value in report.items():
        print(f"{name:>24}: {value}")


if __name__ == "__main__":
    main()
