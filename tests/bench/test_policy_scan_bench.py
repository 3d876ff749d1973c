"""Smoke test of bench/policy_scan.py: small, no timing assertions (figures belong in
docs/performance.md). The first scan acts on every planted key, the second on none."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_policy_scan_benchmark_runs_and_the_second_scan_finds_nothing(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import policy_scan
    finally:
        sys.path.remove(str(BENCH))
        sys.modules.pop("policy_scan", None)
    report = policy_scan.run(2000, tmp_path)
    first = report["first_scan"]
    assert first["unused"] == 60
    assert first["auto_disabled"] == 60
    assert first["auto_revoked"] == 20
    assert first["expired"] == 20
    assert first["expiring_7d"] + first.get("expiring_1d", 0) == 40
    assert report["second_scan"] == {}
