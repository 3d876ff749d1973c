"""Start and stop the servers the HTTP and propagation benchmarks load: Keyplane
(``keyplane serve``), the bare-ASGI ceiling (bench/ceiling_app.py) and the
drf-api-key peer (bench/peer/, in its own virtual environment)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import text

from keyplane.config import Settings, normalize_database_url
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage import migrate
from keyplane.storage.database import Database

BENCH = Path(__file__).resolve().parent
PEER = BENCH / "peer"
PEER_VENV = PEER / ".venv"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    base: str
    #: Headers that authenticate a request on this server.
    auth: dict[str, str]
    #: A key this server accepts, for the verify body.
    key: str


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited at start:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running(
    command: list[str], env: dict[str, str], ready_url: str, log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=cwd
        )
        try:
            wait_ready(process, ready_url, log)
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A private, migrated schema on ``base_url``, dropped at the end.

    tests/conftest.py keeps its own copy (the ``postgres_schema_url`` fixture):
    bench must not import the test suite, nor the suite the benchmarks.
    """
    base = normalize_database_url(base_url)
    schema = f"kp_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = Database(base)
    try:
        with admin.engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            separator = "&" if "?" in base else "?"
            url = f"{base}{separator}options=-csearch_path%3D{schema}"
            database = Database(url)
            migrate.upgrade(database.engine)
            database.dispose()
            yield url
        finally:
            with admin.engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def keyplane_key(database_url: str, data_dir: Path) -> tuple[str, str, str]:
    """Bootstrap an organization; (project id, management key, a keys:verify key)."""
    services = Services.open(Settings(data_dir=data_dir, database_url=database_url))
    try:
        stamp = secrets.token_hex(4)
        boot = services.bootstrap(
            organization_name=f"Bench {stamp}",
            project_name="Default",
            owner_email=f"bench{stamp}@keyplane.test",
        )
        caller = Caller(boot.accounts.organization.id, ("*",), Actor.operator())
        verifier = services.keys.create(
            caller, boot.accounts.project.id, name="bench", scopes=["keys:verify"]
        )
        return boot.accounts.project.id, boot.key.secret.reveal(), verifier.secret.reveal()
    finally:
        services.close()


@contextmanager
def keyplane(
    database_url: str, data_dir: Path, log: Path, *, workers: int = 2, **env_extra: str
) -> Iterator[str]:
    """``keyplane serve`` with ``workers`` workers; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "KEYPLANE_DATA_DIR": str(data_dir),
        "KEYPLANE_DATABASE_URL": database_url,
        # The access log writes a line per request; the peers log nothing by default.
        "KEYPLANE_LOG_LEVEL": "warning",
        # The benchmarks send revoked keys on purpose (propagation): the
        # per-address limit on failed keys would turn those 401s into 429s.
        "KEYPLANE_FAILED_KEY_LIMIT": "1000000 per minute",
        **env_extra,
    }
    base = f"http://127.0.0.1:{port}"
    command = [PYTHON, "-m", "keyplane.cli", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    with running(command, env, f"{base}/readyz", log):
        yield base


@contextmanager
def ceiling(keys_file: Path, log: Path, *, workers: int = 2) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "KEYPLANE_BENCH_KEYS": str(keys_file)}
    command = [PYTHON, str(BENCH / "ceiling_app.py"), str(port), str(workers)]
    base = f"http://127.0.0.1:{port}"
    with running(command, env, f"{base}/", log):
        yield base


def ensure_peer_venv(log: Path) -> Path:
    """bench/peer/.venv with bench/peer/requirements.txt; made once, reused after."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    requirements = PEER / "requirements.txt"
    if stamp.exists() and stamp.read_text() == requirements.read_text():
        return python
    with log.open("ab") as output:
        subprocess.run(
            [sys.executable, "-m", "venv", str(PEER_VENV)], check=True, stdout=output, stderr=output
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
            check=True,
            stdout=output,
            stderr=output,
            timeout=600,
        )
    stamp.write_text(requirements.read_text())
    return python


def peer_keys(python: Path, database: Path, count: int, out: Path) -> list[str]:
    env = {**os.environ, "PEER_DATABASE": str(database)}
    subprocess.run(
        [str(python), str(PEER / "peer_site.py"), "setup", str(count), str(out)],
        check=True,
        env=env,
        timeout=300,
    )
    return out.read_text().split()


@contextmanager
def peer(python: Path, database: Path, log: Path, *, workers: int = 2) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PEER_DATABASE": str(database)}
    command = [str(python.parent / "gunicorn"), "-w", str(workers)]
    command += ["-b", f"127.0.0.1:{port}", "--chdir", str(PEER), "peer_site:application"]
    base = f"http://127.0.0.1:{port}"
    with running(command, env, f"{base}/", log, cwd=PEER):
        yield base
