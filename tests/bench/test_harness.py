"""Smoke tests of the benchmark harness pieces (bench/): they run, on tiny counts,
and check what they measure. No timing assertions; wrk itself is not run here."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:8000/api/v1/whoami
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.10ms    1.20ms  30.00ms   90.00%
  Latency Distribution
     50%    4.90ms
     75%    5.50ms
     90%    6.10ms
     99%  850.00us
  22000 requests in 2.00s, 4.00MB read
Requests/sec:  11000.50
Transfer/sec:      2.00MB
"""


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(BENCH))
    try:
        yield {
            name: importlib.import_module(name)
            for name in ("servers", "http_load", "memory", "propagation", "ceiling_app", "asgi")
        }
    finally:
        sys.path.remove(str(BENCH))
        for name in (
            "servers",
            "http_load",
            "memory",
            "propagation",
            "ceiling_app",
            "verify",
            "asgi",
        ):
            sys.modules.pop(name, None)


def test_wrk_output_is_read_and_errors_fail(bench: dict[str, ModuleType]) -> None:
    http_load = bench["http_load"]
    assert http_load.parse_wrk(WRK_OUTPUT) == (11000.5, 4.9, 0.85)
    with pytest.raises(RuntimeError, match="non-2xx"):
        http_load.parse_wrk(WRK_OUTPUT + "  Non-2xx or 3xx responses: 12\n")
    with pytest.raises(RuntimeError, match="socket errors"):
        http_load.parse_wrk(WRK_OUTPUT + "  Socket errors: connect 0, read 3, write 0, timeout 0\n")


def test_summary_takes_medians_and_ratios(bench: dict[str, ModuleType]) -> None:
    http_load = bench["http_load"]
    Run = http_load.Run
    runs = [Run("keyplane", "whoami", rate, 1.0, 2.0) for rate in (900.0, 1000.0, 5000.0)] + [
        Run("ceiling", "whoami", rate, 1.0, 2.0) for rate in (2000.0, 2000.0, 100.0)
    ]
    runs += [Run("drf", "whoami", 100.0, 9.0, 20.0)]
    summary = http_load.summarize(runs)
    rates = {item.server: item.requests_per_second for item in summary}
    assert rates == {"keyplane": 1000.0, "ceiling": 2000.0, "drf": 100.0}
    assert http_load.ratios(summary) == {
        "whoami: keyplane / ceiling": 0.5,
        "whoami: keyplane / drf-api-key": 10.0,
    }


def test_wrk_scripts_send_the_key(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    server = bench["servers"].Server("x", "http://h", {"Authorization": "Bearer kp_a"}, "kp_a")
    script = bench["http_load"].lua_script(tmp_path, server, "verify").read_text()
    assert 'wrk.headers["Authorization"] = "Bearer kp_a"' in script
    assert 'wrk.method = "POST"' in script
    assert '{"key": "kp_a"}' in script


def test_ceiling_and_keyplane_servers_accept_their_key(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    servers = bench["servers"]
    url = f"sqlite:///{tmp_path / 'keyplane.db'}"
    _, _, key = servers.keyplane_key(url, tmp_path)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(key + "\n")
    with (
        servers.ceiling(keys_file, tmp_path / "ceiling.log", workers=1) as ceiling,
        servers.keyplane(url, tmp_path, tmp_path / "keyplane.log", workers=1) as keyplane,
    ):
        for base in (ceiling, keyplane):
            target = servers.Server("t", base, {"Authorization": f"Bearer {key}"}, key)
            bench["http_load"].check_answers(target)
        refused = httpx.get(f"{ceiling}/api/v1/whoami", headers={"Authorization": "Bearer no"})
        assert refused.status_code == 401


def test_memory_counts_every_key(bench: dict[str, ModuleType]) -> None:
    report = bench["memory"].run(500)
    assert report.keys == 500
    assert report.cache_bytes_per_key > 100
    assert report.with_side_caches_bytes_per_key > report.cache_bytes_per_key


@pytest.mark.slow
def test_propagation_runs_end_to_end_on_sqlite(bench: dict[str, ModuleType]) -> None:
    report = bench["propagation"].run(revocations=2)
    assert report.revocations == 2
    assert len(report.delays_ms) == 2
    assert report.max_ms >= report.p50_ms >= 0


def test_asgi_bench_calls_the_served_app_and_checks_its_answers(
    bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    asgi = bench["asgi"]
    for name in ("KEYPLANE_DATA_DIR", "KEYPLANE_DATABASE_URL", "KEYPLANE_LOG_LEVEL"):
        monkeypatch.setenv(name, "")  # the bench sets them for its app: restored after
    from keyplane.cli.server import APP_FACTORY

    assert asgi.factory_name() == APP_FACTORY
    results = asgi.main(["--calls", "20", "--rounds", "1"])
    assert [result.endpoint for result in results] == ["whoami", "verify"]
