"""Smoke tests of bench/jobs.py: its jobs are what it says they are (no timing)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from keyplane.ionq.circuits import simulator
from keyplane.ionq.jobs.limits import JobLimits
from keyplane.ionq.jobs.requests import CIRCUIT_JOB, parse_programs

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def jobs_bench() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("jobs")
    finally:
        sys.path.remove(str(BENCH))
        for name in ("jobs", "servers"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize("kind", ["h", "rx", "xx", "pauliexp"])
def test_each_worst_job_is_exactly_at_the_default_budget(jobs_bench: ModuleType, kind: str) -> None:
    body = jobs_bench.at_budget(kind)
    (program,) = parse_programs(CIRCUIT_JOB, body["input"], max_qubits=20, limits=JobLimits())
    assert simulator.work(program) == JobLimits().max_work


def test_the_result_cap_job_keeps_the_most_outcomes_allowed(jobs_bench: ModuleType) -> None:
    body = jobs_bench.at_budget("result-cap")
    (program,) = parse_programs(CIRCUIT_JOB, body["input"], max_qubits=20, limits=JobLimits())
    outcomes = simulator.outcome_count(simulator.run(program))
    assert outcomes == JobLimits().max_result_outcomes
