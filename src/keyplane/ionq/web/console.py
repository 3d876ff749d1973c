"""The console's Jobs page: a project's jobs on the IonQ-compatible API (``/v0.4``), newest first.

:func:`add_jobs_page` adds it to the console app (``/console/jobs``); its
template (``templates/jobs.html``) extends the console's ``base.html`` and is
rendered by the console's ``render``, like every console page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from jinja2 import FileSystemLoader
from starlette.responses import Response

from keyplane.console.keys import current_project
from keyplane.console.web import VisitorDep, render, templates
from keyplane.core import scopes as scope_rules
from keyplane.core.paths import IONQ_PREFIX
from keyplane.http.services import ServicesDep
from keyplane.ionq.jobs.records import JobStatus

router = APIRouter()

#: This page's templates, looked up after the console's own.
TEMPLATES: Final = Path(__file__).parent / "templates"
PAGE_SIZE: Final = 25

StatusFilter = Literal["all", "queued", "started", "completed", "failed", "canceled"]
#: Each tab of the page and the job statuses it shows (``None``: every status).
STATUS_FILTERS: Final[dict[str, tuple[str, tuple[JobStatus, ...] | None]]] = {
    "all": ("All", None),
    "queued": ("Queued", (JobStatus.SUBMITTED, JobStatus.READY)),
    "started": ("Started", (JobStatus.STARTED,)),
    "completed": ("Completed", (JobStatus.COMPLETED,)),
    "failed": ("Failed", (JobStatus.FAILED,)),
    "canceled": ("Canceled", (JobStatus.CANCELED,)),
}


@router.get("/jobs")
def jobs_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    project: str | None = Query(None, max_length=40),
    status: StatusFilter = Query("all"),
    cursor: str | None = Query(None, max_length=64),
) -> Response:
    current, projects = current_project(services, visitor, project)
    page = None
    if current is not None:
        page = services.jobs.list_project(
            visitor.caller,
            current.id,
            status=STATUS_FILTERS[status][1],
            limit=PAGE_SIZE,
            cursor=cursor,
        )
    return render(
        request,
        "jobs.html",
        {
            "section": "jobs",
            "project": current,
            "projects": projects,
            "jobs": page.items if page else (),
            "status": status,
            "status_filters": [(value, label) for value, (label, _) in STATUS_FILTERS.items()],
            "cursor": cursor,
            "next_cursor": page.next_cursor if page else None,
            "api_url": f"{str(request.base_url).rstrip('/')}{IONQ_PREFIX}",
            "job_scopes": scope_rules.JOB_SCOPES,
        },
    )


def add_jobs_page(console: FastAPI) -> None:
    """Serve the Jobs page in ``console`` and let the console's templates find its template."""
    loader = templates.env.loader
    assert isinstance(loader, FileSystemLoader)
    if str(TEMPLATES) not in loader.searchpath:
        loader.searchpath.append(str(TEMPLATES))
    console.include_router(router)
