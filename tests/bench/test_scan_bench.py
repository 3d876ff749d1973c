"""Smoke test of bench/scan.py: it generates a tree, scans it and finds what it planted.

No timing assertions (speed figures belong in bench/, docs/performance.md)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_scan_benchmark_runs_and_finds_every_planted_key(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import scan as bench_scan
    finally:
        sys.path.remove(str(BENCH))
        sys.modules.pop("scan", None)
    report = bench_scan.run(tmp_path / "tree", megabytes=0.5, rounds=1)
    assert report.planted == 4  # plain, base64, UTF-16, JSON-escaped
    assert report.found == report.planted
    assert report.megabytes >= 0.5
    assert report.megabytes_per_second > 0
