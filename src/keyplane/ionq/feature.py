"""The IonQ feature's one hook: how the rest of Keyplane gets it and mounts it.

- :func:`open_jobs`: the job service and its worker pool, for ``Services``
  (``services.jobs``, ``services.job_runner``; ``Services.start``/``close``
  start and stop the pool);
- :func:`install`: the ``/v0.4`` app mounted on the Keyplane app, and the
  Jobs page added to the console;
- :func:`size_refusal`: a request under ``/v0.4`` refused at the edge (too
  large, before any route) is answered in IonQ's error shape.

``service/services.py`` and ``app.py`` import this module and nothing else of
``keyplane.ionq``. The web layer is imported when the app is assembled, not
with this module: it depends on ``Services``, whose module imports this one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.responses import Response

from keyplane.config import Settings
from keyplane.core.paths import IONQ_PREFIX
from keyplane.http.problems import Problem
from keyplane.ionq.jobs.runner import JobRunner
from keyplane.ionq.jobs.service import JobService
from keyplane.storage.database import Database

if TYPE_CHECKING:
    from keyplane.service.services import Services


def open_jobs(
    settings: Settings, database: Database, *, clock: Callable[[], datetime]
) -> tuple[JobService, JobRunner]:
    """The job service and the worker pool that runs its jobs (started by ``Services.start``)."""
    jobs = JobService(
        database,
        clock=clock,
        max_qubits=settings.ionq_max_qubits,
        limits=settings.jobs,
        max_json_depth=settings.max_json_depth,
    )
    return jobs, JobRunner(jobs, workers=settings.ionq_workers)


def install(app: FastAPI, console: FastAPI, services: Callable[[], Services | None]) -> None:
    """Mount the ``/v0.4`` app on ``app`` and add the Jobs page to ``console``.

    IonQ's clients expect IonQ's error shape everywhere under ``/v0.4`` (404s
    included), so the surface is an app of its own with its own handlers.
    ``services`` returns the host app's services when a request comes.
    """
    from keyplane.ionq.web.app import create_ionq_app  # here, not above: see the module
    from keyplane.ionq.web.console import add_jobs_page

    app.mount(IONQ_PREFIX, create_ionq_app(services))
    add_jobs_page(console)


def size_refusal(path: str, problem: Problem) -> Response | None:
    """The answer to a request refused at the edge, in IonQ's shape under ``/v0.4``; else None."""
    from keyplane.ionq.web.errors import error_response  # here, not above: see the module

    if path == IONQ_PREFIX or path.startswith(IONQ_PREFIX + "/"):
        return error_response(problem.status, problem.detail, problem.headers)
    return None
