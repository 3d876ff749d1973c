"""Projects of the caller's organization."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from keyplane.api.dependencies import get_services, require
from keyplane.api.schemas import PageOut, ProjectCreate, ProjectOut, page_of
from keyplane.core import scopes
from keyplane.service.records import Caller
from keyplane.service.services import Services

router = APIRouter(prefix="/projects", tags=["projects"])


@router.get("", summary="List projects", response_model=PageOut[ProjectOut])
def list_projects(
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=64),
    caller: Caller = Depends(require(scopes.PROJECTS_READ)),  # noqa: B008
    services: Services = Depends(get_services),  # noqa: B008
) -> dict[str, Any]:
    return page_of(services.accounts.list_projects(caller, limit=limit, cursor=cursor), ProjectOut.of)


@router.post("", status_code=201, summary="Create a project")
def create_project(
    body: ProjectCreate,
    caller: Caller = Depends(require(scopes.PROJECTS_WRITE)),  # noqa: B008
    services: Services = Depends(get_services),  # noqa: B008
) -> ProjectOut:
    return ProjectOut.of(services.accounts.create_project(caller, body.name))


@router.get("/{project_id}", summary="Get a project")
def get_project(
    project_id: str,
    caller: Caller = Depends(require(scopes.PROJECTS_READ)),  # noqa: B008
    services: Services = Depends(get_services),  # noqa: B008
) -> ProjectOut:
    return ProjectOut.of(services.accounts.get_project(caller, project_id))
