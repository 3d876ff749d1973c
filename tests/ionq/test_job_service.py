"""JobService and JobRunner: claims, leases, restarts, the worker pool and the console's list."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from keyplane.config import Settings
from keyplane.core.errors import ObjectNotFound
from keyplane.ionq.jobs.records import LEASE, MAX_ATTEMPTS, JobOwner, JobStatus
from keyplane.service.services import Services
from tests.ionq.conftest import BELL, operator
from tests.support import Clock, Tenant


@pytest.fixture
def owner(services: Services, tenant: Tenant) -> JobOwner:
    return JobOwner(tenant.organization_id, tenant.project_id, tenant.key_id)


def test_a_job_is_claimed_once(services: Services, owner: JobOwner) -> None:
    job = services.jobs.submit(owner, BELL)
    claimed = services.jobs.claim()
    assert claimed is not None
    assert claimed.id == job.id
    assert claimed.attempt == 1
    assert services.jobs.claim() is None
    assert services.jobs.get(owner, job.id).status is JobStatus.STARTED


def test_concurrent_workers_never_run_a_job_twice(services: Services, owner: JobOwner) -> None:
    submitted = {services.jobs.submit(owner, BELL).id for _ in range(12)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while (job := services.jobs.claim()) is not None:
            with lock:
                claimed.append(job.id)
            services.jobs.execute(job)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(claimed) == sorted(submitted)
    statuses = {services.jobs.get(owner, job_id).status for job_id in submitted}
    assert statuses == {JobStatus.COMPLETED}


def test_an_abandoned_job_is_queued_again_and_the_old_claim_is_void(
    services: Services, owner: JobOwner, clock: Clock
) -> None:
    job = services.jobs.submit(owner, BELL)
    first = services.jobs.claim()
    assert first is not None
    clock.advance(LEASE + timedelta(seconds=1))  # its worker died: no renewal
    second = services.jobs.claim()
    assert second is not None
    assert (second.id, second.attempt) == (job.id, 2)
    services.jobs.execute(first)  # the dead worker's late answer is ignored...
    assert services.jobs.get(owner, job.id).status is JobStatus.STARTED
    services.jobs.execute(second)  # ...the live claim's is kept
    assert services.jobs.get(owner, job.id).status is JobStatus.COMPLETED


def test_a_renewed_lease_keeps_the_job(services: Services, owner: JobOwner, clock: Clock) -> None:
    job = services.jobs.submit(owner, BELL)
    assert services.jobs.claim() is not None
    clock.advance(LEASE / 2)
    services.jobs.renew([job.id])
    clock.advance(LEASE / 2 + timedelta(seconds=1))
    assert services.jobs.claim() is None


def test_a_job_that_keeps_losing_its_worker_fails(
    services: Services, owner: JobOwner, clock: Clock
) -> None:
    job = services.jobs.submit(owner, BELL)
    for _ in range(MAX_ATTEMPTS):
        assert services.jobs.claim() is not None
        clock.advance(LEASE + timedelta(seconds=1))
    assert services.jobs.claim() is None
    failed = services.jobs.get(owner, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.failure_code == "InternalError"


def test_jobs_survive_a_restart(settings: Settings, tenant: Tenant) -> None:
    owner = JobOwner(tenant.organization_id, tenant.project_id, tenant.key_id)
    first = Services.open(settings)
    queued = first.jobs.submit(owner, BELL)
    started = first.jobs.submit(owner, BELL)
    assert first.jobs.claim() is not None  # the process "dies" while running it
    first.close()

    clock = Clock()
    clock.advance(LEASE + timedelta(seconds=1))
    second = Services.open(settings, clock=clock)
    try:
        assert second.job_runner.run_pending() == 2
        for job_id in (queued.id, started.id):
            assert second.jobs.get(owner, job_id).status is JobStatus.COMPLETED
        assert second.jobs.probabilities(owner, queued.id) == second.jobs.probabilities(
            owner, started.id
        )
    finally:
        second.close()


def test_the_worker_pool_runs_jobs_and_stops(settings: Settings, tenant: Tenant) -> None:
    owner = JobOwner(tenant.organization_id, tenant.project_id, tenant.key_id)
    services = Services.open(settings)
    services.start()
    try:
        ids = [services.jobs.submit(owner, BELL).id for _ in range(3)]
        services.job_runner.notify()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = {services.jobs.get(owner, job_id).status for job_id in ids}
            if statuses == {JobStatus.COMPLETED}:
                break
            time.sleep(0.05)
        assert statuses == {JobStatus.COMPLETED}
    finally:
        services.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("keyplane-job-worker")]


def test_stopping_requeues_the_jobs_it_did_not_finish(services: Services, owner: JobOwner) -> None:
    job = services.jobs.submit(owner, BELL)
    claimed = services.jobs.claim()
    assert claimed is not None
    services.jobs.release([claimed.id])
    again = services.jobs.claim()
    assert again is not None
    assert (again.id, again.attempt) == (job.id, 1)


def test_the_console_lists_a_projects_jobs_with_the_key_name(
    services: Services, tenant: Tenant, other_tenant: Tenant
) -> None:
    created = services.keys.create(
        operator(tenant), tenant.project_id, name="notebook", scopes=["jobs:*"]
    )
    owner = JobOwner(tenant.organization_id, tenant.project_id, created.record.id)
    body = {**BELL, "shots": 42}
    job = services.jobs.submit(owner, body)
    page = services.jobs.list_project(operator(tenant), tenant.project_id)
    (listed,) = page.items
    assert (listed.id, listed.key_id, listed.key_name) == (job.id, created.record.id, "notebook")
    assert (listed.status, listed.qubits, listed.shots) == (JobStatus.READY, 2, 42)
    with pytest.raises(ObjectNotFound):
        services.jobs.list_project(operator(other_tenant), tenant.project_id)
