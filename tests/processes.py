"""Real ``keyplane serve`` and ``keyplane admin`` processes for end-to-end tests.

Unlike :mod:`tests.live` (Uvicorn in a thread of the test process), these run
the CLI as a separate process, the way a user starts Keyplane: on a free
loopback port, ready once ``/readyz`` answers 200, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

KEYPLANE = [sys.executable, "-m", "keyplane.cli"]
# One client shared by the tests; no keep-alive, so requests spread over workers.
fresh = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sqlite_env(data_dir: Path) -> dict[str, str]:
    """The environment for a Keyplane on SQLite in ``data_dir`` (no database URL)."""
    env = {**os.environ, "KEYPLANE_DATA_DIR": str(data_dir)}
    env.pop("KEYPLANE_DATABASE_URL", None)
    return env


def file_limit(files: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that lowers the child's open-file limit to ``files``."""
    if files is None:
        return None

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    return lower


@contextmanager
def serve(
    env: Mapping[str, str],
    log: Path,
    *,
    workers: int = 1,
    files: int | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Run ``keyplane serve`` with ``env`` until the block ends; yields its base URL.
    ``files``: the server's open-file limit (RLIMIT_NOFILE), when lowered; ``port``:
    a port chosen beforehand (when the environment must name the URL), else a free one."""
    port = port or free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*KEYPLANE, "serve", "--port", str(port), "--workers", str(workers)],
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=file_limit(files),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if fresh.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start:\n{log.read_text()}")
                time.sleep(0.1)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:  # pragma: no cover
                process.kill()
                process.wait()


@contextmanager
def server(
    data_dir: Path, log: Path, *, workers: int = 1, files: int | None = None, **settings: str
) -> Iterator[str]:
    """``keyplane serve`` on SQLite in ``data_dir``; ``settings`` are KEYPLANE_*
    variables (``max_header_bytes="2048"``), no other configuration."""
    env = sqlite_env(data_dir)
    env.update({f"KEYPLANE_{name.upper()}": value for name, value in settings.items()})
    with serve(env, log, workers=workers, files=files) as base:
        yield base


def admin(data_dir: Path, *arguments: str) -> dict[str, object]:
    """``keyplane admin ... --json`` on the SQLite database in ``data_dir``; its answer."""
    done = subprocess.run(
        [*KEYPLANE, "admin", *arguments, "--json"],
        env=sqlite_env(data_dir),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, object] = json.loads(done.stdout)
    return result
