"""Real processes for the fault tests: ``keyplane serve`` and a throwaway PostgreSQL cluster."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REQUIRE_ENV

KEYPLANE = [sys.executable, "-m", "keyplane.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.base}/readyz").status_code == 200:
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start:\n{self.log.read_text()}")
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server fails the test
            self.process.kill()
            self.process.wait()
            pytest.fail(f"server did not stop in {timeout} s")


@contextlib.contextmanager
def serve(data_dir: Path, database_url: str, log: Path, **env: str) -> Iterator[Server]:
    """``keyplane serve`` (one worker) on a free port; stopped (SIGTERM) at the end."""
    port = free_port()
    environment = {
        **os.environ,
        "KEYPLANE_DATA_DIR": str(data_dir),
        "KEYPLANE_DATABASE_URL": database_url,
        # The checks send many revoked keys from 127.0.0.1 on purpose.
        "KEYPLANE_FAILED_KEY_LIMIT": "100000 per minute",
        **env,
    }
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*KEYPLANE, "serve", "--port", str(port), "--workers", "1"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A PostgreSQL cluster of the test's own (never the shared one on 5432)."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *arguments: str) -> None:
        command = [str(self.bin_dir / arguments[0]), *arguments[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=60)
        if done.returncode != 0:
            pytest.fail(f"{arguments[0]} failed: {done.stderr.decode()[-2000:]}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def own_postgres() -> Iterator[Cluster]:
    """initdb + pg_ctl start on a free port in a fresh directory; removed at the end."""
    bin_dir = _postgres_bin()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        message = "needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    # Not under pytest's tmp_path: the postgres user must be able to enter it.
    root = Path(tempfile.mkdtemp(prefix="keyplane-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    cluster = Cluster(bin_dir, root, free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(BaseException):
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
