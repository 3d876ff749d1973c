"""Revocation to webhook delivery: how long after ``DELETE /api/v1/keys/{id}``
answers does a receiver get the signed ``key.revoked`` delivery?

One ``keyplane serve`` (2 workers, SQLite or ``--postgres``) with
``KEYPLANE_OUTBOUND_ALLOW_NETWORKS=127.0.0.1/32``, and a receiver in this process
(a threaded ``http.server`` on 127.0.0.1) that verifies every signature with
``standardwebhooks``. For each of N keys: create it, revoke it, and time from the
revocation's answer to the receiver having the delivery for that key. Not a test:
the figures go to docs/performance.md.

    .venv/bin/python bench/webhook_latency.py [--revocations 100] [--postgres URL]
"""

from __future__ import annotations

import argparse
import http.server
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from standardwebhooks.webhooks import Webhook

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from propagation import percentile

GIVE_UP_S = 10.0


@dataclass
class Report:
    database: str
    revocations: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    delays_ms: list[float] = field(repr=False)


class _Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    secret: str = ""
    arrived: ClassVar[dict[str, float]] = {}
    condition: ClassVar[threading.Condition] = threading.Condition()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        at = time.perf_counter()
        payload = Webhook(type(self).secret).verify(body, dict(self.headers.items()))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
        if payload["type"] == "key.revoked":
            with self.condition:
                self.arrived[payload["data"]["key"]["id"]] = at
                self.condition.notify_all()


def run(*, revocations: int = 100, postgres: str | None = None) -> Report:
    handler = type("Receiver", (_Receiver,), {"arrived": {}, "condition": threading.Condition()})
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    client = httpx.Client(timeout=10)
    with tempfile.TemporaryDirectory(prefix="keyplane-webhooks-") as name, ExitStack() as stack:
        stack.callback(receiver.shutdown)
        directory = Path(name)
        if postgres:
            url = stack.enter_context(servers.postgres_schema(postgres))
        else:
            url = f"sqlite:///{directory / 'keyplane.db'}"
        project, management, _ = servers.keyplane_key(url, directory)
        base = stack.enter_context(
            servers.keyplane(
                url,
                directory,
                directory / "server.log",
                KEYPLANE_OUTBOUND_ALLOW_NETWORKS="127.0.0.1/32",
            )
        )
        manage = {"Authorization": f"Bearer {management}"}
        created = client.post(
            f"{base}/api/v1/webhooks",
            json={
                "url": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
                "event_types": ["key.revoked"],
            },
            headers=manage,
        )
        created.raise_for_status()
        handler.secret = created.json()["secret"]
        delays = []
        for number in range(revocations):
            key = client.post(
                f"{base}/api/v1/projects/{project}/keys",
                json={"name": f"w{number}"},
                headers=manage,
            ).json()
            client.delete(f"{base}/api/v1/keys/{key['id']}", headers=manage).raise_for_status()
            answered = time.perf_counter()
            deadline = answered + GIVE_UP_S
            with handler.condition:
                while key["id"] not in handler.arrived:
                    if not handler.condition.wait(max(0.0, deadline - time.perf_counter())):
                        raise RuntimeError(f"no delivery for {key['id']} within {GIVE_UP_S} s")
                # A delivery can beat the answer to the client: that counts as 0.
                delays.append(max(0.0, handler.arrived[key["id"]] - answered) * 1000)
    ordered = sorted(delays)
    return Report(
        database="postgresql" if postgres else "sqlite",
        revocations=revocations,
        p50_ms=round(percentile(ordered, 0.50), 2),
        p99_ms=round(percentile(ordered, 0.99), 2),
        max_ms=round(ordered[-1], 2),
        mean_ms=round(statistics.fmean(ordered), 2),
        delays_ms=[round(d, 2) for d in delays],
    )


def render(report: Report) -> str:
    return (
        f"revoke -> webhook delivered ({report.database}, {report.revocations} revocations): "
        f"p50 {report.p50_ms} ms, p99 {report.p99_ms} ms, max {report.max_ms} ms, "
        f"mean {report.mean_ms} ms"
    )


def main(argv: Sequence[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revocations", type=int, default=100)
    parser.add_argument("--postgres", default=None)
    options = parser.parse_args(argv)
    report = run(revocations=options.revocations, postgres=options.postgres)
    print(render(report), flush=True)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
