"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from keyplane.api.dependencies import ServicesDep
from keyplane.http.problems import Problem

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database answers",
    responses={503: {"description": "The database is unreachable"}},
    response_model=None,
)
def readyz(services: ServicesDep) -> object:
    try:
        services.database.ping()
    except SQLAlchemyError:
        return Problem(
            503, "not-ready", "The database is unreachable.", {"code": "DATABASE_UNAVAILABLE"}
        ).response()
    return {"status": "ok"}
