"""The IonQ-compatible API's job limits, measured (issue 11): what one key can cost the server.

Four figures, each on a real ``keyplane serve`` process (``/v0.4`` over HTTP):

0. **Worst body at submission**: the time to answer a POST of the bodies under
   1 MiB that cost the most to check (the issue 11 pauliexp body of 165,632
   terms, and 10,000 gates of 20 qubits each).
1. **Worst admitted job**: jobs right at ``KEYPLANE_JOB_MAX_WORK`` (the default
   budget), one per kind of gate, on 20 qubits: ``execution_duration_ms`` as
   the server reports it, and the wall time from submission to completion;
   a pauliexp of 20-letter Y terms (the costliest letters); the most small
   steps the budget admits (13 qubits, each step at ``STEP_FLOOR``); and a
   job whose result is the largest kept (65,536 outcomes).
2. **Cancel latency**: a job at the budget is cancelled while it runs (on a
   server with one job worker); the figure is the time from the cancel's
   answer to the completion of a one-gate job that the only worker could run
   only after dropping the cancelled one (so it includes the claim).
3. **Another project's one-gate job while one project floods**: project A
   fills its queue with jobs at the budget (``KEYPLANE_JOB_MAX_OPEN_PER_KEY``
   of them); project B then submits one-gate jobs one after the other; the
   figure is B's submission-to-completion latency, next to B's latency on an
   idle server.

Run by hand (no timing assertions anywhere in the tests)::

    .venv/bin/python bench/jobs.py [--postgres URL] [--repeat 5] [--json]
    .venv/bin/python bench/jobs.py --quick   # the harness end to end, figures not results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import keyplane, postgres_schema

from keyplane.config import Settings
from keyplane.ionq.circuits import simulator
from keyplane.ionq.circuits.circuit import parse_circuit
from keyplane.ionq.jobs.limits import JobLimits
from keyplane.ionq.jobs.requests import CIRCUIT_JOB, parse_programs
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services

QUBITS = 20
BUDGET = JobLimits().max_work  # 2^29 amplitude updates
MIXED = 8
SMALL_QUBITS = 13  # the widest whose steps all count the floor (2^13 = simulator.STEP_FLOOR)
ONE_GATE: dict[str, Any] = {"input": {"qubits": 1, "circuit": [{"gate": "x", "target": 0}]}}


def at_budget(kind: str, qubits: int = QUBITS, budget: int = BUDGET) -> dict[str, Any]:
    """A job whose estimated work is exactly ``budget``, with gates of ``kind``.

    Every gate touches all ``2^qubits`` amplitudes whichever qubit it acts on;
    keeping the mixing gates on the first ``MIXED`` qubits keeps the result
    small (at most 2^MIXED outcomes), so the job completes instead of failing
    with ``ResultTooLarge`` after its work.
    """
    steps = budget >> qubits
    if kind == "h":
        circuit = [{"gate": "h", "target": index % MIXED} for index in range(steps)]
    elif kind == "rx":
        circuit = [
            {"gate": "rx", "target": index % MIXED, "rotation": 0.1 * index}
            for index in range(steps)
        ]
    elif kind == "xx":
        circuit = [
            {"gate": "xx", "targets": [index % MIXED, (index + 1) % MIXED], "rotation": 0.3}
            for index in range(steps // 2)
        ]
    elif kind == "result-cap":  # little work, the largest result kept (65,536 outcomes)
        qubits = 16
        circuit = [{"gate": "h", "target": index} for index in range(qubits)]
    elif kind == "small-steps":  # the most steps the budget admits, each at its fixed cost
        qubits = SMALL_QUBITS
        circuit = fill({"gate": "h", "targets": list(range(qubits))}, qubits, budget)
    elif kind == "pauliexp-long":  # terms of 20 Y letters: the costliest letters
        gate = {"gate": "pauliexp", "targets": list(range(qubits)), "terms": ["Y" * qubits]}
        terms = budget // _work({**gate, "coefficients": [0.01], "time": 1.0}, qubits)
        circuit = [{**gate, "terms": ["Y" * qubits] * terms, "coefficients": [0.01] * terms,
                    "time": 1.0}]  # fmt: skip
    else:  # one pauliexp gate of many two-letter terms
        gate = {"gate": "pauliexp", "targets": [0, 1], "terms": ["XX"]}
        terms = min(256, budget // _work({**gate, "coefficients": [0.01], "time": 1.0}, qubits))
        circuit = [{**gate, "terms": ["XX"] * terms, "coefficients": [0.01] * terms, "time": 1.0}]
    return {"name": f"bench-{kind}", "input": {"qubits": qubits, "circuit": circuit}}


def _work(gate: dict[str, Any], qubits: int) -> int:
    program = parse_circuit({"qubits": qubits, "circuit": [gate]}, max_qubits=qubits)
    return simulator.work(program)


def fill(gate: dict[str, Any], qubits: int, budget: int) -> list[dict[str, Any]]:
    """As many copies of ``gate`` as ``budget`` admits (and the gate limit)."""
    return [gate] * min(JobLimits().max_gates, budget // _work(gate, qubits))


def worst_bodies() -> dict[str, dict[str, Any]]:
    """Bodies under 1 MiB that cost the most to check at submission (both refused)."""
    pauli = {"gate": "pauliexp", "targets": [0], "terms": ["Z"] * 256,
             "coefficients": [1] * 256, "time": 1}  # fmt: skip
    controlled = {"gate": "x", "controls": list(range(1, QUBITS)), "targets": [0]}
    return {
        # the tester's: 647 gates of 256 terms (took 12.6 s to check, then was admitted)
        "pauliexp-647x256": {"input": {"qubits": 1, "circuit": [pauli] * 647}},
        # the most gates, each with the most qubits to check: linear work, refused on work
        "controlled-10000x20": {"input": {"qubits": QUBITS, "circuit": [controlled] * 10_000}},
    }


def submissions(database_url: str, data_dir: Path, repeat: int) -> dict[str, Any]:
    (key,) = projects(database_url, data_dir, 1)
    results: dict[str, Any] = {}
    with server(database_url, data_dir, "submit") as base:
        project = Project(base, key)
        for name, body in worst_bodies().items():
            content = json.dumps(body, separators=(",", ":")).encode()
            samples, status = [], 0
            for _ in range(repeat):
                started = time.perf_counter()
                response = project.http.post(
                    "/jobs", content=content, headers={"Content-Type": "application/json"}
                )
                samples.append(time.perf_counter() - started)
                status = response.status_code
            results[name] = {"bytes": len(content), "status": status, **_summary(samples)}
    return results


class Project:
    """A project with a ``jobs:*`` key on a running server."""

    def __init__(self, base: str, key: str) -> None:
        self.http = httpx.Client(
            base_url=f"{base}/v0.4", headers={"Authorization": f"apiKey {key}"}, timeout=60
        )

    def submit(self, body: dict[str, Any]) -> str:
        response = self.http.post("/jobs", json=body)
        response.raise_for_status()
        job_id: str = response.json()["id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}")
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def wait(self, job_id: str, *statuses: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["status"] not in statuses:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{job_id} is still {job['status']} after {timeout} s")
            time.sleep(0.01)
        return job

    def cancel(self, job_id: str) -> None:
        self.http.put(f"/jobs/{job_id}/status/cancel").raise_for_status()


def projects(database_url: str, data_dir: Path, count: int) -> list[str]:
    """``count`` projects in one new organization, a ``jobs:*`` key each: the key values."""
    services = Services.open(Settings(data_dir=data_dir, database_url=database_url))
    try:
        boot = services.bootstrap(
            organization_name=f"Jobs bench {time.time_ns()}",
            project_name="A",
            owner_email=f"jobs{time.time_ns()}@keyplane.test",
        )
        caller = Caller(boot.accounts.organization.id, ("*",), Actor.operator())
        ids = [boot.accounts.project.id]
        ids += [services.projects.create_project(caller, f"P{n}").id for n in range(1, count)]
        return [
            services.keys.create(caller, project, name="bench", scopes=["jobs:*"]).secret.reveal()
            for project in ids
        ]
    finally:
        services.close()


@contextmanager
def server(database_url: str, data_dir: Path, name: str, **env: str) -> Iterator[str]:
    with keyplane(database_url, data_dir, data_dir / f"{name}.log", workers=1, **env) as base:
        yield base


def worst_jobs(database_url: str, data_dir: Path, kinds: list[str]) -> dict[str, Any]:
    (key,) = projects(database_url, data_dir, 1)
    results: dict[str, Any] = {}
    with server(database_url, data_dir, "worst") as base:
        project = Project(base, key)
        for kind in kinds:
            started = time.perf_counter()
            job = project.wait(project.submit(at_budget(kind)), "completed", "failed")
            fetched = time.perf_counter()
            body = project.http.get(f"/jobs/{job['id']}/results/probabilities").content
            results[kind] = {
                "result_bytes": len(body),
                "result_fetch_s": round(time.perf_counter() - fetched, 3),
                "status": job["status"],
                "gates": job["stats"]["gate_counts"],
                "execution_ms": job["execution_duration_ms"],
                "wall_s": round(time.perf_counter() - started, 3),
            }
    return results


def simulate_only(kinds: list[str], runs: int) -> dict[str, float]:
    """The same jobs simulated in this process, best of ``runs``: the figure least moved by load."""
    best = {}
    for kind in kinds:
        body = at_budget(kind)
        (program,) = parse_programs(CIRCUIT_JOB, body["input"], max_qubits=26, limits=JobLimits())
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            simulator.run(program)
            times.append(time.perf_counter() - started)
        best[kind] = round(min(times), 3)
    return best


def cancel_latency(database_url: str, data_dir: Path, repeat: int) -> dict[str, Any]:
    (key,) = projects(database_url, data_dir, 1)
    samples = []
    with server(database_url, data_dir, "cancel", KEYPLANE_IONQ_WORKERS="1") as base:
        project = Project(base, key)
        for _ in range(repeat):
            heavy = project.submit(at_budget("h"))
            project.wait(heavy, "running", "started")
            time.sleep(0.3)  # well into the simulation
            project.cancel(heavy)
            cancelled = time.perf_counter()
            project.wait(project.submit(ONE_GATE), "completed")
            samples.append(time.perf_counter() - cancelled)
    return _summary(samples)


def flood(database_url: str, data_dir: Path, repeat: int, flood_jobs: int) -> dict[str, Any]:
    flooder, other = projects(database_url, data_dir, 2)
    with server(database_url, data_dir, "flood") as base:
        a, b = Project(base, flooder), Project(base, other)
        idle = []
        for _ in range(repeat):
            started = time.perf_counter()
            b.wait(b.submit(ONE_GATE), "completed")
            idle.append(time.perf_counter() - started)
        flood_ids = [a.submit(at_budget("h")) for _ in range(flood_jobs)]
        during = []
        for _ in range(repeat):
            started = time.perf_counter()
            b.wait(b.submit(ONE_GATE), "completed")
            during.append(time.perf_counter() - started)
        still_queued = sum(1 for job_id in flood_ids if a.job(job_id)["status"] == "ready")
        for job_id in flood_ids:
            a.http.delete(f"/jobs/{job_id}")
    return {
        "flood_jobs": flood_jobs,
        "flood_still_queued_after": still_queued,
        "idle": _summary(idle),
        "during_flood": _summary(during),
    }


def _summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_s": round(statistics.median(ordered), 3),
        "max_s": round(ordered[-1], 3),
    }


def run(database_url: str, data_dir: Path, *, quick: bool, repeat: int) -> dict[str, Any]:
    kinds = ["h"] if quick else ["h", "rx", "xx", "pauliexp", "pauliexp-long", "small-steps",
                                 "result-cap"]  # fmt: skip
    return {
        "budget": BUDGET,
        "qubits": QUBITS,
        "worst_body_submission": submissions(database_url, data_dir, 1 if quick else repeat),
        "worst_admitted_job": worst_jobs(database_url, data_dir, kinds),
        "worst_admitted_job_in_process_best_s": simulate_only(kinds, 1 if quick else 3),
        "cancel_to_worker_free": cancel_latency(database_url, data_dir, 1 if quick else repeat),
        "other_project_one_gate_job": flood(
            database_url,
            data_dir,
            1 if quick else repeat,
            4 if quick else JobLimits().max_open_per_key,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (a private schema is used)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kp-bench-jobs-") as tmp:
        data_dir = Path(tmp)
        if args.postgres:
            with postgres_schema(args.postgres) as url:
                results = run(url, data_dir, quick=args.quick, repeat=args.repeat)
        else:
            url = f"sqlite:///{data_dir / 'keyplane.db'}"
            results = run(url, data_dir, quick=args.quick, repeat=args.repeat)
    results["database"] = "postgresql" if args.postgres else "sqlite"
    print(json.dumps(results, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
