"""What the job service hands out: a job's status, owner and record, and its errors.

Plain values, shared by the service (``service.py``), its queue (``queue.py``),
the runner and the web layer; no database access here beyond turning a
stored :class:`~keyplane.storage.models.Job` row into a :class:`JobRecord`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from keyplane.core.errors import ErrorCode, InvalidInput, StateConflict
from keyplane.service.records import record_of
from keyplane.service.validation import renderable
from keyplane.storage.models import Job

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


#: Seconds a client at its open-job limit is asked to wait (about one budgeted job).
JOB_LIMIT_RETRY_AFTER: Final = 5
OPEN_STATUSES: Final = (JobStatus.SUBMITTED, JobStatus.READY, JobStatus.STARTED)


class JobLimitReached(StateConflict):
    """The key or the project has as many jobs queued or running as it may.

    ``setting`` names the limit's environment variable; ``limit`` is its value.
    """

    #: A full queue drains: a client's few retries are the right answer (429, Retry-After).
    status = 429
    problem_type = "job-limit"
    code = ErrorCode.JOB_LIMIT

    def __init__(self, message: str, *, setting: str, limit: int) -> None:
        super().__init__(message)
        self.setting = setting
        self.limit = limit

    def problem_headers(self) -> dict[str, str]:
        return {"Retry-After": str(JOB_LIMIT_RETRY_AFTER)}


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


def check_status(status: str) -> str:
    if status not in {member.value for member in JobStatus}:
        raise InvalidInput(
            f"status must be one of {', '.join(member.value for member in JobStatus)}",
            field="status",
        )
    return status


def job_record(row: Job, key_name: str | None = None) -> JobRecord:
    return record_of(
        JobRecord,
        row,
        key_name=key_name,
        status=JobStatus(row.status),
        metadata=renderable(row.meta, "metadata"),
        noise=renderable(row.noise, "noise"),
        settings=renderable(row.settings, "settings"),
        gate_counts=dict(row.gate_counts),
    )


def with_key_name(job: JobRecord, key_name: str | None) -> JobRecord:
    return replace(job, key_name=key_name)


__all__ = [
    "CANCEL_POLL",
    "DEFAULT_PAGE",
    "LEASE",
    "MAX_ATTEMPTS",
    "MAX_PAGE",
    "OPEN_STATUSES",
    "ClaimedJob",
    "JobLimitReached",
    "JobOwner",
    "JobRecord",
    "JobStatus",
    "JobStopped",
    "check_status",
    "job_record",
]
