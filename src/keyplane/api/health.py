"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.exc import SQLAlchemyError

from keyplane.api.dependencies import get_services
from keyplane.http.problems import Problem
from keyplane.service.services import Services

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
def readyz(services: Services = Depends(get_services)) -> object:  # noqa: B008
    try:
        services.database.ping()
    except SQLAlchemyError:
        return Problem(503, "not-ready", "The database is unreachable.", {"code": "DATABASE_UNAVAILABLE"}).response()
    return {"status": "ok"}
