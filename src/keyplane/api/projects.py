"""Projects of the caller's organization."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from keyplane.api.dependencies import require
from keyplane.api.schemas import PageOut, ProjectCreate, ProjectOut
from keyplane.core import scopes
from keyplane.http.services import ServicesDep
from keyplane.service.records import Caller

router = APIRouter(prefix="/projects", tags=["projects"])


@router.get("", summary="List projects", response_model=PageOut[ProjectOut])
def list_projects(
    *,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=64),
    caller: Annotated[Caller, require(scopes.PROJECTS_READ)],
    services: ServicesDep,
) -> PageOut[ProjectOut]:
    page = services.projects.list_projects(caller, limit=limit, cursor=cursor)
    return PageOut[ProjectOut].model_validate(page)


@router.post("", status_code=201, summary="Create a project")
def create_project(
    *,
    body: ProjectCreate,
    caller: Annotated[Caller, require(scopes.PROJECTS_WRITE)],
    services: ServicesDep,
) -> ProjectOut:
    return ProjectOut.model_validate(services.projects.create_project(caller, body.name))


@router.get("/{project_id}", summary="Get a project")
def get_project(
    *,
    project_id: str,
    caller: Annotated[Caller, require(scopes.PROJECTS_READ)],
    services: ServicesDep,
) -> ProjectOut:
    return ProjectOut.model_validate(services.projects.get_project(caller, project_id))
