"""HTTP throughput and latency: Keyplane against the bare-ASGI ceiling and drf-api-key.

Three servers run side by side, each with 2 workers: Keyplane (``keyplane
serve``, SQLite or PostgreSQL), bench/ceiling_app.py on uvicorn (SHA-256 and a
dict, nothing else) and a DRF endpoint with djangorestframework-api-key's
``HasAPIKey`` on gunicorn (bench/peer/, in its own virtual environment). Each
round loads every (server, endpoint) pair in turn with ``wrk`` at 64
connections, rotating the order each round; the report gives the median over
rounds of requests/s, p50 and p99, and the ratios. A run that saw any
non-2xx answer or socket error fails instead of printing a number.

    .venv/bin/python bench/http_load.py [--rounds 3] [--duration 10] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

ENDPOINTS = ("whoami", "verify")
CONNECTIONS = 64


@dataclass
class Run:
    server: str
    endpoint: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float


@dataclass
class Summary:
    server: str
    endpoint: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    rounds: int


@dataclass
class Report:
    connections: int
    duration_s: float
    rounds: int
    database: str
    runs: list[Run] = field(default_factory=list)
    summary: list[Summary] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)


def lua_script(directory: Path, server: servers.Server, endpoint: str) -> Path:
    """A wrk script that sends the server's auth headers (and the verify body)."""
    lines = [f'wrk.headers["{name}"] = "{value}"' for name, value in server.auth.items()]
    if endpoint == "verify":
        lines.append('wrk.method = "POST"')
        lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines.append(f"wrk.body = '{json.dumps({'key': server.key})}'")
    path = directory / f"{server.name}-{endpoint}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if match is None:
        raise RuntimeError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from ``wrk --latency``; fails on errors or non-2xx."""
    if "Non-2xx or 3xx responses" in output:
        raise RuntimeError(f"wrk saw non-2xx answers:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if errors and any(int(value) for value in errors.groups()):
        raise RuntimeError(f"wrk saw socket errors:\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rate and p50 and p99):
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    return float(rate.group(1)), _milliseconds(p50.group(1)), _milliseconds(p99.group(1))


def wrk(url: str, script: Path, duration: float, connections: int) -> tuple[float, float, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    command += ["-s", str(script), url]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr}")
    return parse_wrk(done.stdout)


def check_answers(server: servers.Server) -> None:
    """One request of each kind must succeed before any load (a fast 401 is no result)."""
    import httpx

    whoami = httpx.get(f"{server.base}/api/v1/whoami", headers=server.auth, timeout=10)
    verify = httpx.post(
        f"{server.base}/api/v1/verify", headers=server.auth, json={"key": server.key}, timeout=10
    )
    if whoami.status_code != 200 or verify.status_code != 200 or not verify.json()["valid"]:
        raise RuntimeError(f"{server.name} does not accept its key: {whoami.text} {verify.text}")


def measure(
    targets: Sequence[servers.Server],
    directory: Path,
    *,
    rounds: int,
    duration: float,
    warmup: float,
    connections: int = CONNECTIONS,
) -> list[Run]:
    scripts = {
        (server.name, endpoint): lua_script(directory, server, endpoint)
        for server in targets
        for endpoint in ENDPOINTS
    }
    for server in targets:
        check_answers(server)
        for endpoint in ENDPOINTS:
            wrk(f"{server.base}/api/v1/{endpoint}", scripts[(server.name, endpoint)], warmup, 16)
    runs = []
    for round_number in range(rounds):
        shift = round_number % len(targets)
        for server in [*targets[shift:], *targets[:shift]]:  # taking turns
            for endpoint in ENDPOINTS:
                rate, p50, p99 = wrk(
                    f"{server.base}/api/v1/{endpoint}",
                    scripts[(server.name, endpoint)],
                    duration,
                    connections,
                )
                runs.append(Run(server.name, endpoint, rate, p50, p99))
                print(
                    f"  round {round_number + 1}: {server.name:<9} {endpoint:<7} "
                    f"{rate:>9,.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:7.2f} ms",
                    file=sys.stderr,
                )
    return runs


def summarize(runs: Sequence[Run]) -> list[Summary]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.server, run.endpoint), []).append(run)
    return [
        Summary(
            server,
            endpoint,
            statistics.median(run.requests_per_second for run in group),
            statistics.median(run.p50_ms for run in group),
            statistics.median(run.p99_ms for run in group),
            len(group),
        )
        for (server, endpoint), group in groups.items()
    ]


def ratios(summary: Sequence[Summary]) -> dict[str, float]:
    rate = {(item.server, item.endpoint): item.requests_per_second for item in summary}
    result = {}
    for endpoint in ENDPOINTS:
        keyplane = rate.get(("keyplane", endpoint))
        if keyplane is None:
            continue
        if rate.get(("ceiling", endpoint)):
            result[f"{endpoint}: keyplane / ceiling"] = keyplane / rate[("ceiling", endpoint)]
        if rate.get(("drf", endpoint)):
            result[f"{endpoint}: keyplane / drf-api-key"] = keyplane / rate[("drf", endpoint)]
    return result


def render(report: Report) -> str:
    lines = [
        f"HTTP, wrk -c{report.connections} -d{report.duration_s:g}s, medians of "
        f"{report.rounds} rounds, 2 workers each, Keyplane on {report.database}",
        f"{'server':<10}{'endpoint':<9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    for item in report.summary:
        lines.append(
            f"{item.server:<10}{item.endpoint:<9}{item.requests_per_second:>10,.0f}"
            f"{item.p50_ms:>9.2f}{item.p99_ms:>9.2f}"
        )
    for name, value in report.ratios.items():
        lines.append(f"{name:<34}{value:>8.2f}")
    return "\n".join(lines)


def run(
    *,
    rounds: int = 3,
    duration: float = 10.0,
    warmup: float = 2.0,
    postgres: str | None = None,
    peer: bool = True,
    connections: int = CONNECTIONS,
) -> Report:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="keyplane-http-") as name, ExitStack() as stack:
        directory = Path(name)
        if postgres:
            database_url = stack.enter_context(servers.postgres_schema(postgres))
        else:
            database_url = f"sqlite:///{directory / 'keyplane.db'}"
        _, _, key = servers.keyplane_key(database_url, directory)
        keys_file = directory / "ceiling-keys.txt"
        keys_file.write_text(key + "\n")
        targets = [
            servers.Server(
                "keyplane",
                stack.enter_context(
                    servers.keyplane(database_url, directory, directory / "keyplane.log")
                ),
                {"Authorization": f"Bearer {key}"},
                key,
            ),
            servers.Server(
                "ceiling",
                stack.enter_context(servers.ceiling(keys_file, directory / "ceiling.log")),
                {"Authorization": f"Bearer {key}"},
                key,
            ),
        ]
        if peer:
            python = servers.ensure_peer_venv(directory / "peer-install.log")
            database = directory / "peer.sqlite3"
            peer_key = servers.peer_keys(python, database, 1, directory / "peer-keys.txt")[0]
            targets.append(
                servers.Server(
                    "drf",
                    stack.enter_context(servers.peer(python, database, directory / "peer.log")),
                    {"Authorization": f"Api-Key {peer_key}"},
                    peer_key,
                )
            )
        runs = measure(
            targets,
            directory,
            rounds=rounds,
            duration=duration,
            warmup=warmup,
            connections=connections,
        )
    summary = summarize(runs)
    return Report(
        connections=connections,
        duration_s=duration,
        rounds=rounds,
        database="PostgreSQL" if postgres else "SQLite",
        runs=runs,
        summary=summary,
        ratios=ratios(summary),
    )


def main(argv: Sequence[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--postgres", default=None, help="run Keyplane on this PostgreSQL")
    parser.add_argument("--no-peer", action="store_true", help="leave drf-api-key out")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    report = run(
        rounds=options.rounds,
        duration=options.duration,
        warmup=options.warmup,
        postgres=options.postgres,
        peer=not options.no_peer,
        connections=options.connections,
    )
    print(json.dumps(asdict(report), indent=2) if options.json else render(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
