"""Projects: the containers keys live in, inside one organization."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyplane.core.errors import ObjectNotFound, StateConflict
from keyplane.core.ids import is_id, new_id
from keyplane.service.accounts import access
from keyplane.service.audit import record_by
from keyplane.service.pagination import (
    check_limit,
    newest_first,
    page_of,
)
from keyplane.service.records import Caller, Page, ProjectRecord, record_of
from keyplane.service.validation import check_name
from keyplane.storage.database import Database, WriteConflict
from keyplane.storage.models import Project


class ProjectService:
    def __init__(self, database: Database, *, clock: Callable[[], datetime]) -> None:
        self._database = database
        self._clock = clock

    def create_project(self, caller: Caller, name: str) -> ProjectRecord:
        access.require_manager(caller, "create projects")
        now = self._clock()
        name = check_name(name)
        try:
            with self._database.write() as session:
                if session.scalar(
                    select(Project.pk).where(
                        Project.organization_id == caller.organization_id, Project.name == name
                    )
                ):
                    raise StateConflict(f"a project named {name!r} already exists")
                project = Project(
                    id=new_id("prj"),
                    organization_id=caller.organization_id,
                    name=name,
                    created_at=now,
                    created_by=caller.actor.name,
                )
                session.add(project)
                session.flush()
                record_by(
                    session,
                    caller,
                    "project.created",
                    ("project", project.id),
                    at=now,
                    details={"name": name},
                )
                return project_record(project)
        except WriteConflict:  # a concurrent create of the same name won the race
            raise StateConflict(f"a project named {name!r} already exists") from None

    def get_project(self, caller: Caller, project_id: str) -> ProjectRecord:
        with self._database.read() as session:
            return project_record(find_project(session, caller.organization_id, project_id))

    def list_projects(
        self, caller: Caller, *, limit: int = 50, cursor: str | None = None
    ) -> Page[ProjectRecord]:
        limit = check_limit(limit)
        query = select(Project).where(Project.organization_id == caller.organization_id)
        query = newest_first(query, Project.pk, cursor, limit)
        with self._database.read() as session:
            return page_of(session.scalars(query).all(), limit, project_record)

    def find_project(self, caller: Caller, project: str) -> ProjectRecord:
        """A project of the caller's organization, by id or by name."""
        with self._database.read() as session:
            row = session.scalar(
                select(Project).where(
                    Project.organization_id == caller.organization_id,
                    (Project.id == project) | (Project.name == project),
                )
            )
            if row is None:
                raise ObjectNotFound("project", project)
            return project_record(row)


def find_project(session: Session, organization_id: str, project_id: str) -> Project:
    """The organization's project, or :class:`ObjectNotFound`."""
    if not is_id(project_id, "prj"):
        raise ObjectNotFound("project", project_id)
    project = session.scalar(
        select(Project).where(Project.id == project_id, Project.organization_id == organization_id)
    )
    if project is None:
        raise ObjectNotFound("project", project_id)
    return project


def project_record(project: Project) -> ProjectRecord:
    return record_of(ProjectRecord, project)
