"""The v0.4 routes: whoami, backends (public) and jobs, answered as IonQ's API answers."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any, Final

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response

from keyplane.core import scopes
from keyplane.core.errors import InvalidInput, ObjectNotFound
from keyplane.core.grant import KeyState
from keyplane.core.paths import IONQ_PREFIX
from keyplane.http.services import services_of
from keyplane.http.size_limits import FORM_CONTENT_TYPES
from keyplane.ionq.jobs.records import DEFAULT_PAGE, MAX_PAGE, JobRecord, JobStatus
from keyplane.ionq.jobs.requests import SIMULATOR
from keyplane.ionq.web.dependencies import owner_of, require
from keyplane.ionq.web.errors import PayloadTooLarge

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
#: When this process started serving: the backends' ``last_updated``.
STARTED_AT: Final = int(time.time())

router = APIRouter()

AnyKey = Annotated[KeyState, require(None)]
Reader = Annotated[KeyState, require(scopes.JOBS_READ)]
Writer = Annotated[KeyState, require(scopes.JOBS_WRITE)]


@router.get("/whoami")
async def whoami(key: AnyKey) -> dict[str, Any]:
    """The key that made this call: any valid key may ask."""
    return {"key_id": key.key_id, "key_name": key.name, "project_id": key.project_id}


@router.get("/backends")
async def backends(request: Request, status: str | None = None) -> list[dict[str, Any]]:
    """The backends (public, no key: qiskit-ionq asks before it has one)."""
    backend = _simulator(request)
    return [backend] if status in (None, backend["status"]) else []


@router.get("/backends/{name}")
async def backend(request: Request, name: str) -> dict[str, Any]:
    if name != SIMULATOR:
        raise ObjectNotFound("backend", name)
    return _simulator(request)


@router.post("/jobs")
async def create_job(request: Request, key: Writer) -> dict[str, Any]:
    body = await _json_body(request)
    services = services_of(request)
    job = await anyio.to_thread.run_sync(services.jobs.submit, owner_of(key), body)
    services.job_runner.notify()
    return {"id": job.id, "status": job.status.value}


@router.get("/jobs")
def list_jobs(
    request: Request,
    key: Reader,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    next: Annotated[str | None, Query(max_length=64)] = None,
    id: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    page = services_of(request).jobs.list(
        owner_of(key), status=status, ids=id or (), limit=limit, cursor=next
    )
    answer: dict[str, Any] = {"jobs": [job_json(job) for job in page.items]}
    # cirq-ionq pages on until "next" is absent: leave it out on the last page.
    if page.next_cursor is not None:
        answer["next"] = page.next_cursor
    return answer


@router.get("/jobs/{job_id}")
def get_job(request: Request, key: Reader, job_id: str) -> dict[str, Any]:
    return job_json(services_of(request).jobs.get(owner_of(key), job_id))


@router.get("/jobs/{job_id}/results/probabilities")
@router.get("/jobs/{job_id}/results/probabilities/aggregated")
def probabilities(request: Request, key: Reader, job_id: str) -> Response:
    text = services_of(request).jobs.probabilities(owner_of(key), job_id)
    return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.put("/jobs/{job_id}/status/cancel")
def cancel_job(request: Request, key: Writer, job_id: str) -> dict[str, Any]:
    job = services_of(request).jobs.cancel(owner_of(key), job_id)
    return {"id": job.id, "status": job.status.value}


@router.delete("/jobs/{job_id}")
def delete_job(request: Request, key: Writer, job_id: str) -> dict[str, Any]:
    services_of(request).jobs.delete(owner_of(key), job_id)
    return {"id": job_id, "status": "deleted"}


def job_json(job: JobRecord) -> dict[str, Any]:
    """A job as IonQ's ``GET /v0.4/jobs/{id}`` describes it."""
    answer: dict[str, Any] = {
        "id": job.id,
        "type": job.type,
        "name": job.name,
        "status": job.status.value,
        "backend": job.backend,
        "noise": dict(job.noise) if job.noise is not None else {"model": "ideal"},
        "metadata": job.metadata,
        "shots": job.shots,
        "settings": job.settings,
        "stats": {
            "qubits": job.qubits,
            "circuits": job.circuits,
            "gate_counts": dict(job.gate_counts),
        },
        "submitted_at": _time(job.submitted_at),
        "started_at": _time(job.started_at),
        "completed_at": _time(job.completed_at),
        "execution_duration_ms": job.execution_duration_ms,
        "results": None,
    }
    if job.status is JobStatus.COMPLETED:
        url = f"{IONQ_PREFIX}/jobs/{job.id}/results/probabilities"
        answer["results"] = {"probabilities": {"url": url}}
    # The clients test `"error" in job["failure"]`: a null failure would break them.
    if job.failure_code is not None:
        answer["failure"] = {"code": job.failure_code, "error": job.failure_error or ""}
    return answer


async def _json_body(request: Request) -> Any:
    # A form is never read as JSON (the edge's depth scan relies on it, as FastAPI's
    # routes do): IonQ's clients send application/json, or no content type.
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith(FORM_CONTENT_TYPES):
        raise InvalidInput("send the request body as JSON (Content-Type: application/json)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: only if mounted without the edge's depth limit (size_limits.py).
        raise InvalidInput("the request body is not valid JSON") from None


def _simulator(request: Request) -> dict[str, Any]:
    return {
        "backend": SIMULATOR,
        "status": "available",
        "qubits": services_of(request).settings.ionq_max_qubits,
        "average_queue_time": 0,
        "last_updated": STARTED_AT,
        "noise_models": ["ideal"],
    }


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


__all__ = ["job_json", "router"]
