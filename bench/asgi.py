"""In-process cost of whoami and verify through the app ``keyplane serve`` runs, in µs.

Builds the app from the factory ``keyplane serve`` names
(``keyplane.cli.server.APP_FACTORY``), starts it through its ASGI lifespan
on a temporary SQLite database (so it opens its services from the
environment, as a worker does), and calls it directly: no socket, no HTTP
parsing, the whole middleware stack (access log, size limits, hot path).
Every answer is checked (200) before and after timing; the access log is
off (``KEYPLANE_LOG_LEVEL=warning``), as in bench/http_load.py.

    .venv/bin/python bench/asgi.py [--calls 10000] [--rounds 3] [--json]

Reports the median over rounds of the median µs per call. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from uvicorn.importer import import_from_string

from keyplane.storage import migrate
from keyplane.storage.database import Database


@dataclass
class Result:
    endpoint: str
    calls: int
    rounds: int
    p50_us: float
    mean_us: float


def factory_name() -> str:
    from keyplane.cli import server

    name: str = server.APP_FACTORY
    return name


class Driver:
    """An ASGI app, its lifespan run, called with one request at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lifespan_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.lifespan_sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async def receive() -> dict[str, Any]:
            return await self.lifespan_queue.get()

        async def send(message: dict[str, Any]) -> None:
            await self.lifespan_sent.put(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, receive, send))
        await self.lifespan_queue.put({"type": "lifespan.startup"})
        message = await self.lifespan_sent.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {message}")

    async def stop(self) -> None:
        await self.lifespan_queue.put({"type": "lifespan.shutdown"})
        await self.lifespan_sent.get()
        assert self.task is not None
        await self.task

    async def call(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> int:
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "state": {},
        }
        await self.app(scope, receive, send)
        return status


async def measure(calls: int, rounds: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="kp-bench-asgi-") as directory:
        data_dir = Path(directory)
        database_url = f"sqlite:///{data_dir / 'keyplane.db'}"
        database = Database(database_url)
        migrate.upgrade(database.engine)
        database.dispose()
        _, _, key = servers.keyplane_key(database_url, data_dir)
        os.environ.update(
            KEYPLANE_DATA_DIR=str(data_dir),
            KEYPLANE_DATABASE_URL=database_url,
            KEYPLANE_LOG_LEVEL="warning",
        )
        app = import_from_string(factory_name())()
        driver = Driver(app)
        await driver.start()
        try:
            auth = [
                (b"host", b"127.0.0.1:8000"),
                (b"user-agent", b"keyplane-bench/1"),
                (b"authorization", f"Bearer {key}".encode()),
            ]
            body = json.dumps({"key": key}).encode()
            cases = {
                "whoami": ("GET", "/api/v1/whoami", auth, b""),
                "verify": (
                    "POST",
                    "/api/v1/verify",
                    [
                        *auth,
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                    body,
                ),
            }
            results = []
            for name, (method, path, headers, content) in cases.items():
                for _ in range(200):  # warm-up: caches, first-call imports
                    status = await driver.call(method, path, headers, content)
                    if status != 200:
                        raise RuntimeError(f"{name} answered {status}, not 200")
                medians, means = [], []
                for _ in range(rounds):
                    times = []
                    for _ in range(calls):
                        started = time.perf_counter_ns()
                        status = await driver.call(method, path, headers, content)
                        times.append(time.perf_counter_ns() - started)
                        if status != 200:
                            raise RuntimeError(f"{name} answered {status}, not 200")
                    medians.append(statistics.median(times) / 1000)
                    means.append(statistics.fmean(times) / 1000)
                results.append(
                    Result(
                        name, calls, rounds, statistics.median(medians), statistics.median(means)
                    )
                )
            return results
        finally:
            await driver.stop()


def render(results: list[Result]) -> str:
    lines = [f"app: {factory_name()} (in process, no socket)", "endpoint  p50 µs  mean µs"]
    lines += [f"{r.endpoint:<8}  {r.p50_us:6.1f}  {r.mean_us:7.1f}" for r in results]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    results = asyncio.run(measure(options.calls, options.rounds))
    if options.json:
        print(json.dumps([asdict(result) for result in results], indent=2))
    else:
        print(render(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
