"""Jobs of the IonQ-compatible API, the clients' side: submit, read, list, cancel, delete.

A job belongs to the project of the key that submitted it; every read and
change is filtered by that project (and its organization), so another
project's job is simply not found. Submitting checks the whole circuit
first (``requests.py``), so a job that is accepted can run; running it is the
queue's part (``queue.py``), which :class:`JobService` extends.

One key cannot take the simulator from everyone else (docs/security.md,
"Limits"): a submission takes the project's row lock and counts the key's
and the project's open jobs before it inserts, so concurrent submissions
cannot overshoot :class:`~keyplane.ionq.jobs.limits.JobLimits`; the job's
estimated work is checked from its circuit before it is queued.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from keyplane.core.errors import InvalidInput, ObjectNotFound
from keyplane.core.ids import is_id, new_id
from keyplane.ionq.jobs.queue import JobQueue
from keyplane.ionq.jobs.records import (
    DEFAULT_PAGE,
    MAX_ID_FILTER,
    MAX_PAGE,
    OPEN_STATUSES,
    JobLimitReached,
    JobOwner,
    JobRecord,
    JobStatus,
    check_status,
    job_record,
    with_key_name,
)
from keyplane.ionq.jobs.requests import SIMULATOR, gate_counts, parse_submission
from keyplane.service.accounts.projects import find_project
from keyplane.service.pagination import newest_first, page_of
from keyplane.service.records import Caller, Page
from keyplane.storage.models import ApiKey, Job, Project


class JobService(JobQueue):
    """A process's jobs: what the v0.4 routes and the console call, and (inherited) the
    queue its workers run."""

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
            return job_record(row)

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
            raise ObjectNotFound("project", owner.project_id)
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
            return job_record(self._find(session, owner, job_id))

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
            tuple(with_key_name(job, names.get(job.key_id)) for job in page.items),
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
            return job_record(row)

    def delete(self, owner: JobOwner, job_id: str) -> None:
        """Remove the job and its results for good (a running simulation is discarded)."""
        with self._database.write() as session:
            row = self._find(session, owner, job_id)
            session.delete(row)

    # -- helpers -----------------------------------------------------------------

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
        query = query.options(defer(Job.probabilities), defer(Job.input))
        query = newest_first(query, Job.pk, cursor, limit)
        with self._database.read() as session:
            return page_of(session.scalars(query).all(), limit, job_record)

    @staticmethod
    def _find(session: Session, owner: JobOwner, job_id: str) -> Job:
        if not is_id(job_id, "job"):
            raise ObjectNotFound("job", job_id)
        row = session.scalar(
            select(Job).where(
                Job.id == job_id,
                Job.organization_id == owner.organization_id,
                Job.project_id == owner.project_id,
            )
        )
        if row is None:
            raise ObjectNotFound("job", job_id)
        return row


__all__ = ["JobService"]
