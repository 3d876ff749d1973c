"""Jobs of the IonQ-compatible API: submit, read, cancel, delete, and run them.

A job belongs to the project of the key that submitted it; every read and
change is filtered by that project (and its organization), so another
project's job is simply not found. Submitting checks the whole circuit
first, so a job that is accepted can run. Workers (``service/job_runner.py``)
claim a ``ready`` job with a conditional ``UPDATE ... WHERE status = 'ready'``,
so two workers, in one process or in several, never run one job twice. A
claim is a lease: the worker renews it while the simulation runs, and a job
whose lease ran out (its process died) is queued again, at most
``MAX_ATTEMPTS`` times.

One key cannot take the simulator from everyone else (docs/security.md,
"Limits"): a submission takes the project's row lock and counts the key's
and the project's open jobs before it inserts, so concurrent submissions
cannot overshoot ``JobLimits``; the job's estimated work is checked from its
circuit before it is queued; a claim picks the project that has waited
longest (fewest running jobs, then the oldest last start) and never runs more
than ``max_running_per_project`` of one project's jobs at once; a running
simulation reads its job's status every ``CANCEL_POLL`` seconds and stops when
it was canceled, deleted or re-queued, in this process or any other; and a
result holds at most ``max_result_outcomes`` outcomes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased, defer

from keyplane.config import DEFAULT_MAX_JSON_DEPTH, JobLimits
from keyplane.core.errors import Conflict, InvalidInput, NotFound
from keyplane.core.ids import is_id, new_id
from keyplane.quantum import simulator
from keyplane.quantum.circuit import InvalidCircuit, Program
from keyplane.service.job_requests import (
    MULTI_CIRCUIT_JOB,
    SIMULATOR,
    gate_counts,
    parse_programs,
    parse_submission,
)
from keyplane.service.keys import find_project
from keyplane.service.pagination import decode_cursor, encode_cursor
from keyplane.service.records import Caller, Page
from keyplane.service.validation import renderable
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey, Job, Project

DEFAULT_PAGE: Final = 25
MAX_PAGE: Final = 1000
MAX_ID_FILTER: Final = 100
#: Seconds between two reads of a running job's status (a cancel stops it within this).
CANCEL_POLL: Final = 0.2
#: How long a claim holds without renewal; workers renew every ``LEASE / 4``.
LEASE: Final = timedelta(seconds=60)
#: Claims after which a job that keeps losing its worker is failed.
MAX_ATTEMPTS: Final = 3


class JobStatus(StrEnum):
    SUBMITTED = "submitted"
    READY = "ready"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


OPEN_STATUSES: Final = (JobStatus.SUBMITTED, JobStatus.READY, JobStatus.STARTED)


class JobLimitReached(Conflict):
    """The key or the project has as many jobs queued or running as it may.

    ``setting`` names the limit's environment variable; ``limit`` is its value.
    """

    def __init__(self, message: str, *, setting: str, limit: int) -> None:
        super().__init__(message)
        self.setting = setting
        self.limit = limit


class JobStopped(Exception):
    """A running simulation was stopped: its job was canceled, deleted or re-queued."""


@dataclass(frozen=True, slots=True)
class JobOwner:
    """Whose jobs a call sees: the calling key's project (and organization)."""

    organization_id: str
    project_id: str
    key_id: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    organization_id: str
    project_id: str
    key_id: str
    #: The submitting key's name (``None`` when the list did not ask for it).
    key_name: str | None
    name: str | None
    type: str
    backend: str
    status: JobStatus
    shots: int
    qubits: int
    circuits: int
    metadata: Mapping[str, Any] | None
    noise: Mapping[str, Any] | None
    settings: Mapping[str, Any] | None
    gate_counts: Mapping[str, int]
    submitted_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    execution_duration_ms: int | None
    failure_code: str | None
    failure_error: str | None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker holds the lease of."""

    id: str
    type: str
    attempt: int
    input: Mapping[str, Any]


class JobService:
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

    # -- the IonQ surface ------------------------------------------------------

    def submit(self, owner: JobOwner, body: Mapping[str, Any]) -> JobRecord:
        """Check a job request (the JSON body IonQ's clients send) and queue it."""
        submission = parse_submission(
            body, max_qubits=self.max_qubits, limits=self.limits, max_depth=self.max_json_depth
        )
        now = self._clock()
        row = Job(
            id=new_id("job"),
            organization_id=owner.organization_id,
            project_id=owner.project_id,
            key_id=owner.key_id,
            name=submission.name,
            type=submission.type,
            backend=SIMULATOR,
            # The circuit was checked above, so the job is queued at once.
            status=JobStatus.READY.value,
            shots=submission.shots,
            qubits=max(program.qubits for program in submission.programs),
            circuits=len(submission.programs),
            input=dict(submission.input),
            meta=submission.metadata,
            noise=submission.noise,
            settings=submission.settings,
            gate_counts=gate_counts(submission.programs),
            submitted_at=now,
            attempts=0,
        )
        with self._database.write() as session:
            self._admit(session, owner)
            session.add(row)
            session.flush()
            return _record(row)

    def _admit(self, session: Session, owner: JobOwner) -> None:
        """Refuse a job over the key's or the project's open-job limit, under the project's lock.

        The row lock (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's write
        transaction already holds the database's only write lock) serializes
        the submissions of one project across processes, so the count below
        cannot be raced past the limit.
        """
        locked = session.scalar(
            select(Project.id)
            .where(Project.id == owner.project_id, Project.organization_id == owner.organization_id)
            .with_for_update()
        )
        if locked is None:
            raise NotFound("project", owner.project_id)
        open_jobs = Job.status.in_([status.value for status in OPEN_STATUSES])
        limits = self.limits
        for whose, counted, limit, setting in (
            ("the project", Job.project_id == owner.project_id,
             limits.max_open_per_project, "KEYPLANE_JOB_MAX_OPEN_PER_PROJECT"),
            ("this key", Job.key_id == owner.key_id,
             limits.max_open_per_key, "KEYPLANE_JOB_MAX_OPEN_PER_KEY"),
        ):  # fmt: skip
            count = session.scalar(select(func.count()).select_from(Job).where(counted, open_jobs))
            if (count or 0) >= limit:
                raise JobLimitReached(
                    f"{whose} has {count} jobs queued or running, the most it may "
                    f"({setting}={limit}); submit again when some have finished",
                    setting=setting,
                    limit=limit,
                )

    def get(self, owner: JobOwner, job_id: str) -> JobRecord:
        with self._database.read() as session:
            return _record(self._find(session, owner, job_id))

    def list(
        self,
        owner: JobOwner,
        *,
        status: str | None = None,
        ids: Iterable[str] = (),
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page[JobRecord]:
        """The project's jobs, newest first."""
        query = select(Job).where(
            Job.organization_id == owner.organization_id, Job.project_id == owner.project_id
        )
        return self._page(query, status=status, ids=ids, limit=limit, cursor=cursor)

    def list_project(
        self,
        caller: Caller,
        project_id: str,
        *,
        status: str | Collection[str] | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page[JobRecord]:
        """A project's jobs for the console, newest first, with the submitting key's name.

        ``status`` is one status or several (the console's "queued" is both
        ``submitted`` and ``ready``).
        """
        query = select(Job).where(
            Job.organization_id == caller.organization_id, Job.project_id == project_id
        )
        with self._database.read() as session:
            find_project(session, caller.organization_id, project_id)
        page = self._page(query, status=status, ids=(), limit=limit, cursor=cursor)
        key_ids = {job.key_id for job in page.items}
        names: dict[str, str] = {}
        if key_ids:
            with self._database.read() as session:
                rows = session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(key_ids)))
                names = {key_id: name for key_id, name in rows}
        return Page(
            tuple(_with_key_name(job, names.get(job.key_id)) for job in page.items),
            page.next_cursor,
        )

    def probabilities(self, owner: JobOwner, job_id: str) -> str:
        """A completed job's probabilities as JSON text; :class:`InvalidInput` before that."""
        with self._database.read() as session:
            row = self._find(session, owner, job_id)
            if row.status != JobStatus.COMPLETED or row.probabilities is None:
                raise InvalidInput(
                    f"job {row.id} has no results: its status is {row.status}", field="id"
                )
            return row.probabilities

    def cancel(self, owner: JobOwner, job_id: str) -> JobRecord:
        """Cancel a job that has not finished; a finished job is left as it is."""
        now = self._clock()
        with self._database.write() as session:
            row = self._find(session, owner, job_id)
            # Read the status again under the row's lock: a worker finishing the
            # job at this moment must not have its result overwritten by a cancel.
            session.refresh(row, with_for_update=True)
            if row.status in OPEN_STATUSES:
                row.status = JobStatus.CANCELED.value
                row.completed_at = now
                row.lease_expires_at = None
            return _record(row)

    def delete(self, owner: JobOwner, job_id: str) -> None:
        """Remove the job and its results for good (a running simulation is discarded)."""
        with self._database.write() as session:
            row = self._find(session, owner, job_id)
            session.delete(row)

    # -- the workers -------------------------------------------------------------

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
            self._finish(claimed, failure=(error.code, str(error)))
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

    # -- helpers -----------------------------------------------------------------

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

    def _page(
        self,
        query: Any,
        *,
        status: str | Collection[str] | None,
        ids: Iterable[str],
        limit: int,
        cursor: str | None,
    ) -> Page[JobRecord]:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        if isinstance(status, str):
            query = query.where(Job.status == check_status(status))
        elif status is not None:
            query = query.where(Job.status.in_([check_status(each) for each in status]))
        wanted = list(ids)
        if wanted:
            if len(wanted) > MAX_ID_FILTER:
                raise InvalidInput(f"at most {MAX_ID_FILTER} ids", field="id")
            query = query.where(Job.id.in_([job_id for job_id in wanted if is_id(job_id, "job")]))
        after = decode_cursor(cursor)
        if after is not None:
            query = query.where(Job.pk < after)
        query = (
            query.options(defer(Job.probabilities), defer(Job.input))
            .order_by(Job.pk.desc())
            .limit(limit + 1)
        )
        with self._database.read() as session:
            rows = session.scalars(query).all()
            more = len(rows) > limit
            rows = rows[:limit]
            return Page(
                tuple(_record(row) for row in rows),
                encode_cursor(rows[-1].pk) if more else None,
            )

    @staticmethod
    def _find(session: Session, owner: JobOwner, job_id: str) -> Job:
        if not is_id(job_id, "job"):
            raise NotFound("job", job_id)
        row = session.scalar(
            select(Job).where(
                Job.id == job_id,
                Job.organization_id == owner.organization_id,
                Job.project_id == owner.project_id,
            )
        )
        if row is None:
            raise NotFound("job", job_id)
        return row


def check_status(status: str) -> str:
    if status not in {member.value for member in JobStatus}:
        raise InvalidInput(
            f"status must be one of {', '.join(member.value for member in JobStatus)}",
            field="status",
        )
    return status


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


def _record(row: Job, key_name: str | None = None) -> JobRecord:
    return JobRecord(
        id=row.id,
        organization_id=row.organization_id,
        project_id=row.project_id,
        key_id=row.key_id,
        key_name=key_name,
        name=row.name,
        type=row.type,
        backend=row.backend,
        status=JobStatus(row.status),
        shots=row.shots,
        qubits=row.qubits,
        circuits=row.circuits,
        metadata=renderable(row.meta, "metadata"),
        noise=renderable(row.noise, "noise"),
        settings=renderable(row.settings, "settings"),
        gate_counts=dict(row.gate_counts),
        submitted_at=row.submitted_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        execution_duration_ms=row.execution_duration_ms,
        failure_code=row.failure_code,
        failure_error=row.failure_error,
    )


def _with_key_name(job: JobRecord, key_name: str | None) -> JobRecord:
    return replace(job, key_name=key_name)


__all__ = [
    "CANCEL_POLL",
    "LEASE",
    "MAX_ATTEMPTS",
    "ClaimedJob",
    "JobLimitReached",
    "JobOwner",
    "JobRecord",
    "JobService",
    "JobStatus",
    "JobStopped",
]
