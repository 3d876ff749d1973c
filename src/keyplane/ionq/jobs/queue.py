"""The job queue: what the workers do with jobs (claim, simulate, store, renew, release).

Workers (``runner.py``) claim a ``ready`` job with a conditional
``UPDATE ... WHERE status = 'ready'``, so two workers, in one process or in
several, never run one job twice. A claim is a lease: the worker renews it
while the simulation runs, and a job whose lease ran out (its process died)
is queued again, at most ``MAX_ATTEMPTS`` times.

A claim picks the project that has waited longest (fewest running jobs, then
the oldest last start) and never runs more than ``max_running_per_project``
of one project's jobs at once; a running simulation reads its job's status
every ``CANCEL_POLL`` seconds and stops when it was canceled, deleted or
re-queued, in this process or any other; and a result holds at most
``max_result_outcomes`` outcomes. :class:`~keyplane.ionq.jobs.service.JobService`
(the clients' side: submit, read, cancel, delete) is this queue and more.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from keyplane.config import DEFAULT_MAX_JSON_DEPTH
from keyplane.ionq.circuits import simulator
from keyplane.ionq.circuits.circuit import InvalidCircuit, Program
from keyplane.ionq.jobs.limits import JobLimits
from keyplane.ionq.jobs.records import (
    CANCEL_POLL,
    LEASE,
    MAX_ATTEMPTS,
    ClaimedJob,
    JobStatus,
    JobStopped,
)
from keyplane.ionq.jobs.requests import MULTI_CIRCUIT_JOB, parse_programs
from keyplane.storage.database import Database
from keyplane.storage.models import Job, Project


class JobQueue:
    """The workers' side of the jobs: one per process, shared by its worker threads."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime],
        max_qubits: int,
        limits: JobLimits | None = None,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    ) -> None:
        self._database = database
        self._clock = clock
        self.max_qubits = max_qubits
        self.limits = limits or JobLimits()
        self.max_json_depth = max_json_depth

    def claim(self) -> ClaimedJob | None:
        """Take the next ready job (after re-queuing abandoned ones), or None.

        The next job is the oldest ready one of the project that has waited
        longest: fewest running jobs, then the oldest last start. A project
        already running ``max_running_per_project`` jobs is passed over, so
        one project's flood leaves the other workers to everyone else.
        """
        now = self._clock()
        abandoned = and_(Job.status == JobStatus.STARTED.value, Job.lease_expires_at < now)
        with self._database.read() as session:
            waiting = session.scalar(
                select(Job.pk).where(or_(Job.status == JobStatus.READY.value, abandoned)).limit(1)
            )
        if waiting is None:  # the common case stays a cheap read, no write lock
            return None
        with self._database.write() as session:
            self._requeue_abandoned(session, now)
            project_id = session.scalar(self._next_project())
            if project_id is None:
                return None
            # Under the project's lock (as submissions take it), so two workers
            # of any processes cannot both take the project's last running slot.
            session.execute(
                select(Project.id).where(Project.id == project_id).with_for_update()
            ).all()
            if _running(session, project_id) >= self.limits.max_running_per_project:
                return None  # another worker took the slot; the next poll looks again
            pk = session.scalar(
                select(Job.pk)
                .where(Job.project_id == project_id, Job.status == JobStatus.READY.value)
                .order_by(Job.pk)
                .limit(1)
            )
            if pk is None:
                return None
            taken = session.execute(
                update(Job)
                .where(Job.pk == pk, Job.status == JobStatus.READY.value)
                .values(
                    status=JobStatus.STARTED.value,
                    started_at=now,
                    attempts=Job.attempts + 1,
                    lease_expires_at=now + LEASE,
                )
                .execution_options(synchronize_session=False)
            )
            if _rowcount(taken) != 1:
                return None  # another worker took it first
            job_id, job_type, attempt, workload = session.execute(
                select(Job.id, Job.type, Job.attempts, Job.input).where(Job.pk == pk)
            ).one()
        return ClaimedJob(job_id, job_type, attempt, workload)

    def _next_project(self) -> Any:
        """The query for the project whose ready jobs go next (see :meth:`claim`)."""
        ready = (
            select(Job.project_id.label("project_id"), func.min(Job.pk).label("oldest"))
            .where(Job.status == JobStatus.READY.value)
            .group_by(Job.project_id)
            .subquery()
        )
        started, served = aliased(Job), aliased(Job)
        running = (
            select(func.count())
            .select_from(started)
            .where(
                started.project_id == ready.c.project_id,
                started.status == JobStatus.STARTED.value,
            )
            .scalar_subquery()
        )
        last_start = (
            select(func.max(served.started_at))
            .where(served.project_id == ready.c.project_id)
            .scalar_subquery()
        )
        return (
            select(ready.c.project_id)
            .where(running < self.limits.max_running_per_project)
            .order_by(running, last_start.asc().nulls_first(), ready.c.oldest)
            .limit(1)
        )

    def execute(
        self, claimed: ClaimedJob, *, interrupted: Callable[[], bool] = lambda: False
    ) -> bool:
        """Simulate a claimed job and store its outcome; False if it stopped before the end.

        It stops (within about ``CANCEL_POLL`` seconds) when the job is no
        longer this claim's (canceled, deleted or re-queued, by any process)
        or when ``interrupted()`` says so (the worker pool is stopping).
        """
        started = time.perf_counter()
        checkpoint = self._checkpoint(claimed, interrupted)
        try:
            programs = parse_programs(
                claimed.type, claimed.input, max_qubits=self.max_qubits, limits=self.limits
            )
            text = _probabilities_json(
                claimed.id,
                claimed.type,
                programs,
                max_outcomes=self.limits.max_result_outcomes,
                checkpoint=checkpoint,
            )
        except JobStopped:
            return False
        except InvalidCircuit as error:
            self._finish(claimed, failure=(error.failure_code, str(error)))
            return True
        except MemoryError:
            self._finish(claimed, failure=("SimulationError", "the simulation ran out of memory"))
            return True
        elapsed = max(1, math.ceil((time.perf_counter() - started) * 1000))
        self._finish(claimed, probabilities=text, duration_ms=elapsed)
        return True

    def _checkpoint(
        self, claimed: ClaimedJob, interrupted: Callable[[], bool]
    ) -> Callable[[], None]:
        """What the simulator calls between chunks: raise :class:`JobStopped` to stop it.

        The job's row is read at most every ``CANCEL_POLL`` seconds: that is
        how a cancel reaches a simulation running in another process.
        """
        next_read = time.monotonic() + CANCEL_POLL

        def checkpoint() -> None:
            nonlocal next_read
            if interrupted():
                raise JobStopped(claimed.id)
            if time.monotonic() < next_read:
                return
            with self._database.read() as session:
                current = session.execute(
                    select(Job.status, Job.attempts).where(Job.id == claimed.id)
                ).first()
            if current is None or tuple(current) != (JobStatus.STARTED.value, claimed.attempt):
                raise JobStopped(claimed.id)
            next_read = time.monotonic() + CANCEL_POLL

        return checkpoint

    def renew(self, job_ids: Iterable[str]) -> None:
        """Extend the leases of jobs this process is running."""
        self._update_started(job_ids, lease_expires_at=self._clock() + LEASE)

    def release(self, job_ids: Iterable[str]) -> None:
        """Put jobs this process will not finish (it is stopping) back in the queue."""
        self._update_started(
            job_ids,
            status=JobStatus.READY.value,
            lease_expires_at=None,
            attempts=Job.attempts - 1,
        )

    def _update_started(self, job_ids: Iterable[str], **values: Any) -> None:
        """Set ``values`` on those of ``job_ids`` still started (a canceled job is left alone)."""
        ids = list(job_ids)
        if not ids:
            return
        with self._database.write() as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(ids), Job.status == JobStatus.STARTED.value)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    def _finish(
        self,
        claimed: ClaimedJob,
        *,
        probabilities: str | None = None,
        duration_ms: int | None = None,
        failure: tuple[str, str] | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "completed_at": self._clock(),
            "lease_expires_at": None,
            "execution_duration_ms": duration_ms,
        }
        if failure is None:
            values.update(status=JobStatus.COMPLETED.value, probabilities=probabilities)
        else:
            values.update(
                status=JobStatus.FAILED.value,
                failure_code=failure[0],
                failure_error=failure[1],
            )
        with self._database.write() as session:
            # Only while this claim still holds: a canceled, deleted or re-queued
            # job keeps what happened to it.
            session.execute(
                update(Job)
                .where(
                    Job.id == claimed.id,
                    Job.status == JobStatus.STARTED.value,
                    Job.attempts == claimed.attempt,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    @staticmethod
    def _requeue_abandoned(session: Session, now: datetime) -> None:
        abandoned = session.execute(
            select(Job.pk, Job.attempts).where(
                Job.status == JobStatus.STARTED.value, Job.lease_expires_at < now
            )
        ).all()
        for pk, attempts in abandoned:
            if attempts >= MAX_ATTEMPTS:
                values: dict[str, Any] = {
                    "status": JobStatus.FAILED.value,
                    "completed_at": now,
                    "failure_code": "InternalError",
                    "failure_error": f"the job lost its worker {attempts} times",
                }
            else:
                values = {"status": JobStatus.READY.value}
            session.execute(
                update(Job)
                .where(Job.pk == pk, Job.status == JobStatus.STARTED.value)
                .values(lease_expires_at=None, **values)
                .execution_options(synchronize_session=False)
            )


def _probabilities_json(
    job_id: str,
    job_type: str,
    programs: tuple[Program, ...],
    *,
    max_outcomes: int,
    checkpoint: Callable[[], None],
) -> str:
    """Single circuit: ``{outcome: p}``; several: ``{"<job id>-<index>": {outcome: p}}``.

    A result with more than ``max_outcomes`` outcomes (all circuits together)
    fails the job rather than being cut: IonQ's clients sample from the
    probabilities and expect them to add up to 1.
    """
    results = []
    outcomes = 0
    for program in programs:
        probabilities = simulator.run(program, checkpoint=checkpoint)
        outcomes += simulator.outcome_count(probabilities)
        if outcomes > max_outcomes:
            raise InvalidCircuit(
                "ResultTooLarge",
                f"the result has {outcomes:,} or more outcomes; this server keeps at most "
                f"{max_outcomes:,} (KEYPLANE_JOB_MAX_RESULT_OUTCOMES): measure fewer qubits "
                "in superposition",
            )
        results.append(simulator.as_ionq_probabilities(probabilities))
    answer: Any = results[0]
    if job_type == MULTI_CIRCUIT_JOB:
        answer = {f"{job_id}-{index}": result for index, result in enumerate(results)}
    return json.dumps(answer, separators=(",", ":"))


def _running(session: Session, project_id: str) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.project_id == project_id, Job.status == JobStatus.STARTED.value)
    )
    return int(count or 0)


def _rowcount(result: Any) -> int:
    count: int = result.rowcount
    return count


__all__ = ["JobQueue"]
