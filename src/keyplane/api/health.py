"""Liveness and readiness.

Ready means: the database answers and its schema is at the Alembic revision
this Keyplane ships (an empty or older database fails every request, so it
is not ready). A positive answer is reused for a second
(``service/availability.py``); the hot path never runs this check.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter

from keyplane.http.problems import Problem
from keyplane.http.services import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database answers and its schema is current",
    responses={503: {"description": "The database is unreachable or not migrated"}},
    response_model=None,
)
async def readyz(services: ServicesDep) -> object:
    problem = await anyio.to_thread.run_sync(services.readiness_problem)
    if problem is not None:
        return Problem(
            503, "not-ready", problem, {"code": "DATABASE_UNAVAILABLE"}, {"Retry-After": "1"}
        ).response()
    return {"status": "ok"}
