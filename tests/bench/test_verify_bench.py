"""Smoke test of bench/verify.py: it runs end to end on tiny counts. No timing assertions."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import POSTGRES_ENV, require_service

BENCH = Path(__file__).resolve().parents[2] / "bench" / "verify.py"
SMALL = ["--keys", "50", "--calls", "50", "--warmup", "5"]
SQLITE_CASES = ["hit", "miss_sqlite", "garbage"]


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """bench/verify.py loaded as a module (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("keyplane_bench_verify", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def check_figures(report: Any, cases: list[str]) -> None:
    assert [result.case for result in report.results] == cases
    for result in report.results:
        assert result.calls == 50
        assert 0 < result.p50_us <= result.p99_us
        assert result.mean_us > 0


def test_sqlite_prints_the_three_local_figures(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    report = bench.main(SMALL)
    check_figures(report, SQLITE_CASES)
    out = capsys.readouterr().out
    for case in SQLITE_CASES:
        assert f"\n{case} " in out
    assert "p50 µs" in out


def test_json_output(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    bench.main([*SMALL, "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["keys"] == 50
    assert [result["case"] for result in printed["results"]] == SQLITE_CASES
    assert {"p50_us", "p99_us", "mean_us"} <= set(printed["results"][0])


@pytest.mark.postgres
def test_postgres_adds_the_fourth_figure(bench: ModuleType) -> None:
    url = require_service(POSTGRES_ENV, "PostgreSQL")
    report = bench.main([*SMALL, "--postgres", url])
    check_figures(report, [*SQLITE_CASES, "miss_postgres"])
    assert "postgresql" in report.environment
