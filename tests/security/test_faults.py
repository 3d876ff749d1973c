"""Faults with real processes: kill -9 in the middle of writes, PostgreSQL stopped under
load, and graceful shutdown. Each is bounded in requests and seconds."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from keyplane.config import Settings
from keyplane.service.services import Services
from keyplane.storage import migrate
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey, AuditEvent, Project
from tests.security.processes import own_postgres, serve
from tests.support import Tenant, bearer

pytestmark = pytest.mark.slow


def _bootstrap(tmp_path: Path, database_url: str) -> Tenant:
    services = Services.open(Settings(data_dir=tmp_path, database_url=database_url))
    try:
        return Tenant.of(
            services.bootstrap(
                organization_name="Acme", project_name="Default", owner_email="o@acme.test"
            )
        )
    finally:
        services.close()


@dataclass
class Ledger:
    """What the API confirmed: keys created (id -> value) and keys revoked."""

    created: dict[str, str] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    #: Revocations sent; one the kill cut off may or may not have committed.
    attempted: set[str] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _burst(base: str, tenant: Tenant, ledger: Ledger, stop: threading.Event, worker: int) -> None:
    """Create keys and revoke every other one, until stopped or the server dies."""
    with httpx.Client(base_url=base, headers=tenant.headers, timeout=10) as client:
        for index in range(2000):
            if stop.is_set():
                return
            try:
                response = client.post(
                    f"/api/v1/projects/{tenant.project_id}/keys",
                    json={"name": f"burst {worker}-{index}"},
                )
                with ledger.lock:
                    ledger.statuses.append(response.status_code)
                if response.status_code != 201:
                    time.sleep(0.05)  # a client backing off while the database is away
                    continue
                created = response.json()
                with ledger.lock:
                    ledger.created[created["id"]] = created["key"]
                if index % 2:
                    with ledger.lock:
                        ledger.attempted.add(created["id"])
                    revoked = client.delete(f"/api/v1/keys/{created['id']}")
                    with ledger.lock:
                        ledger.statuses.append(revoked.status_code)
                    if revoked.status_code == 200:
                        with ledger.lock:
                            ledger.revoked.add(created["id"])
            except httpx.TransportError:
                return


def _check_ledger(base: str, tenant: Tenant, ledger: Ledger) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        for key_id, value in ledger.created.items():
            record = client.get(f"/api/v1/keys/{key_id}", headers=tenant.headers)
            assert record.status_code == 200, f"confirmed key {key_id} is lost"
            whoami = client.get("/api/v1/whoami", headers=bearer(value))
            if key_id in ledger.revoked:
                assert record.json()["status"] == "revoked"
                assert whoami.status_code == 401, f"confirmed revocation of {key_id} is lost"
            elif key_id not in ledger.attempted:
                assert whoami.status_code == 200


def _check_consistency(database_url: str) -> None:
    """Every key has its creation event and project; every revocation its event."""
    database = Database(database_url)
    try:
        with database.read() as session:
            keys = session.scalar(select(func.count()).select_from(ApiKey))
            created = session.scalar(select(func.count()).where(AuditEvent.action == "key.created"))
            revoked_keys = session.scalar(
                select(func.count()).where(ApiKey.revoked_at.is_not(None))
            )
            revoked_events = session.scalar(
                select(func.count()).where(AuditEvent.action == "key.revoked")
            )
            orphans = session.scalar(
                select(func.count())
                .select_from(ApiKey)
                .outerjoin(Project, Project.id == ApiKey.project_id)
                .where(Project.id.is_(None))
            )
            if database.is_sqlite:
                (integrity,) = session.execute(text("PRAGMA integrity_check")).one()
                assert integrity == "ok"
                assert session.execute(text("PRAGMA foreign_key_check")).all() == []
    finally:
        database.dispose()
    assert keys == created
    assert revoked_keys == revoked_events
    assert orphans == 0


def test_if_the_server_is_killed_during_writes_then_nothing_confirmed_is_lost(
    tmp_path: Path, database_url: str
) -> None:
    tenant = _bootstrap(tmp_path, database_url)
    ledger = Ledger()
    stop = threading.Event()
    log = tmp_path / "server.log"
    with serve(tmp_path, database_url, log) as server:
        workers = [
            threading.Thread(target=_burst, args=(server.base, tenant, ledger, stop, n))
            for n in range(3)
        ]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 20
        while len(ledger.created) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.stop(signal.SIGKILL)  # in the middle of the burst
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert len(ledger.created) >= 40
    assert ledger.revoked
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        assert path is not None
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with serve(tmp_path, database_url, log) as restarted:
        _check_ledger(restarted.base, tenant, ledger)
    _check_consistency(database_url)


def test_if_postgres_stops_under_load_then_503s_then_recovery_without_a_restart(
    tmp_path: Path,
) -> None:
    with own_postgres() as cluster:
        url = cluster.url
        database = Database(Settings.from_env({"KEYPLANE_DATABASE_URL": url}).database_url)
        migrate.upgrade(database.engine)
        database.dispose()
        normalized = Settings.from_env({"KEYPLANE_DATABASE_URL": url}).database_url
        tenant = _bootstrap(tmp_path, normalized)
        ledger = Ledger()
        stop = threading.Event()
        log = tmp_path / "server.log"
        with serve(tmp_path, url, log) as server:
            workers = [
                threading.Thread(target=_burst, args=(server.base, tenant, ledger, stop, n))
                for n in range(2)
            ]
            for worker in workers:
                worker.start()
            time.sleep(1)
            cluster.stop()
            down_at = len(ledger.statuses)
            time.sleep(2)
            with httpx.Client(base_url=server.base, timeout=10) as client:
                ready = client.get("/readyz")
                assert ready.status_code == 503
                assert ready.headers["content-type"] == "application/problem+json"
                refused = client.get("/api/v1/projects", headers=tenant.headers)
                assert refused.status_code == 503
                assert refused.json()["code"] == "DATABASE_UNAVAILABLE"
                assert "retry-after" in refused.headers
                cluster.start()
                deadline = time.monotonic() + 20
                while client.get("/readyz").status_code != 200:
                    assert time.monotonic() < deadline, "did not recover"
                    time.sleep(0.2)
                time.sleep(1)
            stop.set()
            for worker in workers:
                worker.join(timeout=30)
            during = ledger.statuses[down_at:]
            assert 503 in during
            assert set(ledger.statuses) <= {200, 201, 503}, sorted(set(ledger.statuses))
            after = ledger.statuses[-5:]
            assert set(after) <= {200, 201}, "the server did not recover by itself"
            _check_ledger(server.base, tenant, ledger)
        assert "Traceback" not in log.read_text()
        _check_consistency(normalized)


def test_if_the_server_gets_sigterm_then_it_writes_the_last_uses_first(
    tmp_path: Path, database_url: str
) -> None:
    tenant = _bootstrap(tmp_path, database_url)
    log = tmp_path / "server.log"
    with serve(tmp_path, database_url, log) as server:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            response = client.get(
                "/api/v1/whoami", headers={**tenant.headers, "User-Agent": "the-last-request"}
            )
            assert response.status_code == 200
        # At once: the periodic flush (every second) has almost surely not run yet.
        # Uvicorn shuts down gracefully, then re-raises the signal: -15 is a clean exit.
        assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log.read_text()
    database = Database(database_url)
    try:
        with database.read() as session:
            agent = session.scalar(
                select(ApiKey.last_used_user_agent).where(ApiKey.id == tenant.key_id)
            )
    finally:
        database.dispose()
    assert agent == "the-last-request"
