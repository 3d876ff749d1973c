"""One ``jobs:write`` key cannot take the simulator from everyone else (issue 11).

Each test here failed on the code before the fix: open jobs per key and per
project are limited under concurrent submissions to real server processes;
a job over its work budget is refused at submission; a result is capped;
the next job is the oldest of the project that waited longest; a cancel
reaches a running simulation through the database.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyplane.config import ConfigError, Settings
from keyplane.core import scopes
from keyplane.core.errors import InvalidInput
from keyplane.ionq.circuits import simulator
from keyplane.ionq.jobs.limits import JobLimits
from keyplane.ionq.jobs.records import JobLimitReached, JobOwner, JobStatus
from keyplane.ionq.jobs.requests import CIRCUIT_JOB, parse_programs
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from tests.ionq.conftest import BELL
from tests.processes import serve
from tests.security.conftest import MakeClient
from tests.support import Clock, Tenant


def dense(qubits: int, gates: int) -> dict[str, Any]:
    """A job of ``gates`` Hadamards cycling over ``qubits`` qubits (every gate mixes)."""
    circuit = [{"gate": "h", "target": index % qubits} for index in range(gates)]
    return {"type": "ionq.circuit.v1", "input": {"qubits": qubits, "circuit": circuit}}


def key_of(services: Services, tenant: Tenant, project_id: str | None = None) -> JobOwner:
    """A new ``jobs:*`` key in the tenant's project (or ``project_id``), as a job owner."""
    caller = Caller(tenant.organization_id, (scopes.ALL,), Actor.operator())
    project = project_id or tenant.project_id
    created = services.keys.create(caller, project, name="jobs", scopes=scopes.JOB_SCOPES)
    return JobOwner(tenant.organization_id, project, created.record.id)


@pytest.fixture
def tenant_services(settings: Settings, clock: Clock) -> Iterator[tuple[Services, Tenant]]:
    services = Services.open(
        dataclasses.replace(settings, jobs=JobLimits(max_open_per_key=3, max_open_per_project=5)),
        clock=clock,
    )
    try:
        tenant = Tenant.of(
            services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
        )
        yield services, tenant
    finally:
        services.close()


# -- open jobs per key and per project -------------------------------------------------


def test_if_a_key_has_its_open_jobs_then_the_next_is_refused_with_429_naming_the_setting(
    make_client: MakeClient,
) -> None:
    client, services = make_client(jobs=JobLimits(max_open_per_key=2))
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    caller = Caller(tenant.organization_id, (scopes.ALL,), Actor.operator())
    key = services.keys.create(caller, tenant.project_id, name="k", scopes=scopes.JOB_SCOPES)
    headers = {"Authorization": f"apiKey {key.secret.reveal()}"}
    first, second = (client.post("/v0.4/jobs", json=BELL, headers=headers) for _ in range(2))
    assert (first.status_code, second.status_code) == (200, 200)
    refused = client.post("/v0.4/jobs", json=BELL, headers=headers)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "5"
    body = refused.json()
    assert body["statusCode"] == 429
    assert body["error"] == "Too Many Requests"
    assert "KEYPLANE_JOB_MAX_OPEN_PER_KEY=2" in body["message"]
    # A finished (here: canceled) job frees its place.
    client.put(f"/v0.4/jobs/{first.json()['id']}/status/cancel", headers=headers)
    assert client.post("/v0.4/jobs", json=BELL, headers=headers).status_code == 200


def test_the_project_limit_counts_every_key_of_the_project(
    tenant_services: tuple[Services, Tenant],
) -> None:
    services, tenant = tenant_services
    keys = [key_of(services, tenant) for _ in range(3)]
    accepted = 0
    refusals: list[str] = []
    for owner in keys * 3:
        try:
            services.jobs.submit(owner, BELL)
            accepted += 1
        except JobLimitReached as error:
            refusals.append(str(error))
    assert accepted == 5
    assert refusals
    assert all("KEYPLANE_JOB_MAX_OPEN_PER_PROJECT=5" in r for r in refusals)


@pytest.mark.parametrize("workers", [pytest.param(2, id="two-server-processes")])
def test_concurrent_submissions_to_real_servers_never_overshoot_the_limits(
    settings: Settings, tmp_path: Path, workers: int
) -> None:
    """40 submissions at once, over two ``keyplane serve`` worker processes: exactly 4 pass."""
    services = Services.open(settings)
    try:
        tenant = Tenant.of(
            services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
        )
        caller = Caller(tenant.organization_id, (scopes.ALL,), Actor.operator())
        created = services.keys.create(caller, tenant.project_id, name="k", scopes=["jobs:write"])
        other = services.keys.create(caller, tenant.project_id, name="o", scopes=["jobs:write"])
    finally:
        services.close()
    env = {
        **os.environ,
        "KEYPLANE_DATA_DIR": str(tmp_path / "data"),
        "KEYPLANE_DATABASE_URL": settings.database_url,
        "KEYPLANE_IONQ_WORKERS": "0",  # nothing runs: every accepted job stays open
        "KEYPLANE_JOB_MAX_OPEN_PER_KEY": "4",
        "KEYPLANE_JOB_MAX_OPEN_PER_PROJECT": "6",
    }
    with serve(env, tmp_path / "server.log", workers=workers) as base:
        barrier = threading.Barrier(20, timeout=30)

        def submit(key: str) -> int:
            with httpx.Client(timeout=30) as http:
                barrier.wait()
                response = http.post(
                    f"{base}/v0.4/jobs", json=BELL, headers={"Authorization": f"apiKey {key}"}
                )
                return response.status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            first = list(pool.map(submit, [created.secret.reveal()] * 20))
            # Then the project's limit, with a second key racing the same way.
            second = list(pool.map(submit, [other.secret.reveal()] * 20))
    assert sorted(first) == [200] * 4 + [429] * 16
    assert sorted(second) == [200] * 2 + [429] * 18


# -- the work budget, checked at submission -------------------------------------------


def test_a_job_over_the_work_budget_is_refused_at_submission_in_ionqs_shape(
    make_client: MakeClient,
) -> None:
    """The finding's job: 1,500 dense gates on 20 qubits (17 s of simulation)."""
    client, services = make_client()
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    caller = Caller(tenant.organization_id, (scopes.ALL,), Actor.operator())
    key = services.keys.create(caller, tenant.project_id, name="k", scopes=scopes.JOB_SCOPES)
    headers = {"Authorization": f"apiKey {key.secret.reveal()}"}
    refused = client.post("/v0.4/jobs", json=dense(20, 1500), headers=headers)
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "Bad Request"
    assert "KEYPLANE_JOB_MAX_WORK" in body["message"]
    assert "1,500 gates on up to 20 qubits" in body["message"]
    owner = JobOwner(tenant.organization_id, tenant.project_id, key.record.id)
    assert services.jobs.list(owner).items == ()  # nothing was queued


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        pytest.param(dense(20, 513), "KEYPLANE_JOB_MAX_WORK", id="one-gate-over-the-work"),
        pytest.param(
            {
                "input": {
                    "qubits": 20,
                    "circuit": [
                        {
                            "gate": "pauliexp",
                            "targets": [0, 1],
                            "terms": ["ZZ"] * 256,  # a pass and a copy per term
                            "coefficients": [0.1] * 256,
                            "time": 1,
                        },
                        {"gate": "h", "target": 0},
                    ],
                }
            },
            "KEYPLANE_JOB_MAX_WORK",
            id="a-gate-costs-its-terms",
        ),
        pytest.param(dense(2, 10_001), "KEYPLANE_JOB_MAX_GATES", id="gates"),
        pytest.param(
            {
                "type": "ionq.multi-circuit.v1",
                "input": {"circuits": [dense(2, 6_000)["input"]] * 2},
            },
            "at most 10000 gates in all its circuits",
            id="gates-of-all-circuits",
        ),
        pytest.param({**BELL, "shots": 1_000_001}, "KEYPLANE_JOB_MAX_SHOTS", id="shots"),
        pytest.param(dense(21, 1), "KEYPLANE_IONQ_MAX_QUBITS", id="qubits"),
    ],
)
def test_each_budget_limit_is_named_in_the_refusal(
    tenant_services: tuple[Services, Tenant], body: dict[str, Any], setting: str
) -> None:
    services, tenant = tenant_services
    with pytest.raises(InvalidInput, match=setting):
        services.jobs.submit(key_of(services, tenant), body)


def test_the_largest_job_the_budget_admits_is_accepted(
    tenant_services: tuple[Services, Tenant],
) -> None:
    services, tenant = tenant_services
    job = services.jobs.submit(key_of(services, tenant), dense(20, 512))  # 512 x 2^20 = 2^29
    assert job.status is JobStatus.READY


# -- the result is bounded -------------------------------------------------------------


def test_a_uniform_superposition_of_20_qubits_fails_instead_of_storing_31_mb(
    tenant_services: tuple[Services, Tenant],
) -> None:
    services, tenant = tenant_services
    owner = key_of(services, tenant)
    job = services.jobs.submit(owner, dense(20, 20))  # H on each of 20 qubits: 2^20 outcomes
    assert services.job_runner.run_pending() == 1
    failed = services.jobs.get(owner, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.failure_code == "ResultTooLarge"
    assert "KEYPLANE_JOB_MAX_RESULT_OUTCOMES" in (failed.failure_error or "")
    with pytest.raises(InvalidInput):
        services.jobs.probabilities(owner, job.id)


def test_the_result_cap_counts_every_circuit_of_a_job(
    settings: Settings, tenant: Tenant, clock: Clock
) -> None:
    capped = Services.open(
        dataclasses.replace(settings, jobs=JobLimits(max_result_outcomes=8)), clock=clock
    )
    try:
        owner = key_of(capped, tenant)
        circuit = [{"gate": "h", "targets": [0, 1]}]  # 4 outcomes per circuit

        def multi(count: int) -> dict[str, Any]:
            circuits = [{"qubits": 2, "circuit": circuit}] * count
            return {"type": "ionq.multi-circuit.v1", "input": {"circuits": circuits}}

        fits = capped.jobs.submit(owner, multi(2))
        over = capped.jobs.submit(owner, multi(3))
        capped.job_runner.run_pending()
        assert capped.jobs.get(owner, fits.id).status is JobStatus.COMPLETED
        assert capped.jobs.get(owner, over.id).failure_code == "ResultTooLarge"
    finally:
        capped.close()


# -- fair scheduling -------------------------------------------------------------------


def test_a_flooding_project_does_not_delay_another_projects_job(
    services: Services, tenant: Tenant, clock: Clock
) -> None:
    caller = Caller(tenant.organization_id, (scopes.ALL,), Actor.operator())
    flood_project = services.projects.create_project(caller, "Flood").id
    flooder = key_of(services, tenant, flood_project)
    other = key_of(services, tenant)
    flood = [services.jobs.submit(flooder, BELL).id for _ in range(5)]
    one = services.jobs.submit(other, BELL).id

    first = services.jobs.claim()  # both projects waited as long: the oldest job
    assert first is not None
    assert first.id == flood[0]
    # The flooding project already runs a job (KEYPLANE_JOB_MAX_RUNNING_PER_PROJECT=1).
    clock.advance(_SECOND)
    second = services.jobs.claim()
    assert second is not None
    assert second.id == one
    assert services.jobs.claim() is None  # both projects are at their running limit

    services.jobs.execute(first)
    services.jobs.execute(second)
    clock.advance(_SECOND)
    third = services.jobs.claim()
    assert third is not None
    assert third.id == flood[1]


def test_the_project_that_waited_longest_goes_first_with_one_worker(
    settings: Settings, tenant: Tenant, clock: Clock
) -> None:
    """Two running slots per project: still one job of each project in turn."""
    wide = Services.open(
        dataclasses.replace(settings, jobs=JobLimits(max_running_per_project=2)), clock=clock
    )
    try:
        caller = Caller(tenant.organization_id, (scopes.ALL,), Actor.operator())
        flooder = key_of(wide, tenant, wide.projects.create_project(caller, "Flood").id)
        other = key_of(wide, tenant)
        flood = [wide.jobs.submit(flooder, BELL).id for _ in range(4)]
        theirs = [wide.jobs.submit(other, BELL).id for _ in range(2)]
        order = []
        while (claimed := wide.jobs.claim()) is not None:
            order.append(claimed.id)
            wide.jobs.execute(claimed)
            clock.advance(_SECOND)
        assert order == [flood[0], theirs[0], flood[1], theirs[1], flood[2], flood[3]]
    finally:
        wide.close()


# -- cancel stops a running simulation -------------------------------------------------


@pytest.mark.parametrize("stop", ["cancel", "delete"])
def test_a_cancel_from_another_instance_stops_the_running_simulation(
    settings: Settings, tenant: Tenant, stop: str
) -> None:
    """The job would run for a minute or more; the worker is free again within seconds."""
    heavy_limits = JobLimits(max_work=1 << 40, max_running_per_project=2)
    running = Services.open(dataclasses.replace(settings, ionq_workers=1, jobs=heavy_limits))
    elsewhere = Services.open(settings)  # another instance on the same database
    try:
        owner = key_of(running, tenant)
        heavy = running.jobs.submit(owner, dense(20, 8000)).id
        running.start()
        running.job_runner.notify()
        _wait_for(lambda: running.jobs.get(owner, heavy).status is JobStatus.STARTED, 30)
        time.sleep(0.5)  # well into the simulation
        if stop == "cancel":
            elsewhere.jobs.cancel(owner, heavy)
        else:
            elsewhere.jobs.delete(owner, heavy)
        small = running.jobs.submit(owner, BELL).id
        running.job_runner.notify()
        # The only worker must drop the heavy job to run this one: bounded, not timed.
        _wait_for(lambda: running.jobs.get(owner, small).status is JobStatus.COMPLETED, 20)
        if stop == "cancel":
            canceled = running.jobs.get(owner, heavy)
            assert canceled.status is JobStatus.CANCELED
            assert canceled.execution_duration_ms is None
    finally:
        running.close()
        elsewhere.close()


def test_stopping_the_pool_queues_a_running_job_again_at_once(
    settings: Settings, tenant: Tenant
) -> None:
    heavy_limits = JobLimits(max_work=1 << 40)
    running = Services.open(dataclasses.replace(settings, ionq_workers=1, jobs=heavy_limits))
    try:
        owner = key_of(running, tenant)
        heavy = running.jobs.submit(owner, dense(20, 8000)).id
        running.start()
        running.job_runner.notify()
        _wait_for(lambda: running.jobs.get(owner, heavy).status is JobStatus.STARTED, 30)
        running.job_runner.stop(timeout=60)
        assert running.jobs.get(owner, heavy).status is JobStatus.READY
        assert not any(t.is_alive() for t in threading.enumerate() if "job-worker" in t.name)
    finally:
        running.close()


# -- the settings ----------------------------------------------------------------------


def test_the_job_limits_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "KEYPLANE_DATA_DIR": str(tmp_path),
        "KEYPLANE_JOB_MAX_OPEN_PER_KEY": "7",
        "KEYPLANE_JOB_MAX_OPEN_PER_PROJECT": "9",
        "KEYPLANE_JOB_MAX_RUNNING_PER_PROJECT": "2",
        "KEYPLANE_JOB_MAX_GATES": "500",
        "KEYPLANE_JOB_MAX_SHOTS": "1000",
        "KEYPLANE_JOB_MAX_WORK": "1000000",
        "KEYPLANE_JOB_MAX_RESULT_OUTCOMES": "1024",
    }
    assert Settings.from_env(env).jobs == JobLimits(7, 9, 2, 500, 1000, 1_000_000, 1024)
    assert Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path)}).jobs == JobLimits()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEYPLANE_JOB_MAX_OPEN_PER_KEY", "0"),
        ("KEYPLANE_JOB_MAX_OPEN_PER_PROJECT", "lots"),
        ("KEYPLANE_JOB_MAX_RUNNING_PER_PROJECT", "0"),
        ("KEYPLANE_JOB_MAX_GATES", "-1"),
        ("KEYPLANE_JOB_MAX_SHOTS", "0"),
        ("KEYPLANE_JOB_MAX_WORK", "1e99"),
        ("KEYPLANE_JOB_MAX_RESULT_OUTCOMES", "0"),
    ],
)
def test_a_wrong_job_limit_fails_at_start_naming_the_setting(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path), name: value})


_SECOND = timedelta(seconds=1)


def _wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.05)


# -- pauliexp terms and small steps are budgeted (issue 11) ----------------------------

PAULI_GATE: dict[str, Any] = {
    "gate": "pauliexp",
    "targets": [0],
    "terms": ["Z"] * 256,
    "coefficients": [1] * 256,
    "time": 1,
}


@pytest.mark.parametrize("last_gate_valid", [True, False])
def test_the_testers_1_mib_pauliexp_body_is_refused_by_its_term_count(
    make_client: MakeClient, last_gate_valid: bool
) -> None:
    """647 gates of 256 terms on 1 qubit: it took 12.6 s to check and was admitted (0.12 %)."""
    client, services = make_client()
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    caller = Caller(tenant.organization_id, (scopes.ALL,), Actor.operator())
    key = services.keys.create(caller, tenant.project_id, name="k", scopes=scopes.JOB_SCOPES)
    last = PAULI_GATE if last_gate_valid else {**PAULI_GATE, "terms": ["X", "Z"] * 128}
    body = {"qubits": 1, "circuit": [PAULI_GATE] * 646 + [last]}
    refused = client.post(
        "/v0.4/jobs",
        json={"input": body},
        headers={"Authorization": f"apiKey {key.secret.reveal()}"},
    )
    assert refused.status_code == 400
    assert "KEYPLANE_JOB_MAX_GATES" in refused.json()["message"]
    assert "165,632" in refused.json()["message"]  # counted, not parsed: the invalid gate unseen
    owner = JobOwner(tenant.organization_id, tenant.project_id, key.record.id)
    assert services.jobs.list(owner).items == ()


def test_terms_count_toward_the_gate_limit_of_all_circuits_of_a_job(
    tenant_services: tuple[Services, Tenant],
) -> None:
    services, tenant = tenant_services
    circuit = {"qubits": 1, "circuit": [PAULI_GATE] * 20}  # 5,120 terms each
    body = {"type": "ionq.multi-circuit.v1", "input": {"circuits": [circuit, circuit]}}
    with pytest.raises(InvalidInput, match="at most 10000 gates in all its circuits"):
        services.jobs.submit(key_of(services, tenant), body)


def test_a_budget_of_tiny_steps_is_as_many_steps_as_their_fixed_cost_admits() -> None:
    """Each step counts at least 2^13 (its fixed cost), so 2^29 admits 65,536 steps on 1 qubit.

    Counted as 2 amplitude updates each, 2^28 of them fitted (10,000 gates of
    26 targets each on 26 qubits under a raised gate limit ran for minutes).
    """
    limits = JobLimits(max_gates=100_000)
    tiny = {"gate": "x", "target": 0}
    admitted = {"qubits": 1, "circuit": [tiny] * 65_536}
    (program,) = parse_programs(CIRCUIT_JOB, admitted, max_qubits=20, limits=limits)
    assert simulator.work(program) == limits.max_work
    with pytest.raises(InvalidInput, match="KEYPLANE_JOB_MAX_WORK"):
        parse_programs(
            CIRCUIT_JOB, {**admitted, "circuit": [tiny] * 65_537}, max_qubits=20, limits=limits
        )
