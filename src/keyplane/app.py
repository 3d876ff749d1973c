"""Assembly: the FastAPI application with the API mounted and the services' lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.types import Scope

import keyplane
from keyplane.api import audit, health, keys, leaks, projects, verify, whoami
from keyplane.api.dependencies import no_store
from keyplane.api.errors import install_error_handlers
from keyplane.api.hotpath import HotPath, HotPathFront
from keyplane.api.schemas import problem_responses
from keyplane.config import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES, Settings
from keyplane.console import create_console
from keyplane.http.access_log import AccessLogMiddleware
from keyplane.http.problems import Problem
from keyplane.http.size_limits import SizeLimitMiddleware, SizeLimits
from keyplane.ionq import create_ionq_app
from keyplane.ionq.errors import error_response as ionq_error_response
from keyplane.ionq.routes import PREFIX as IONQ_PREFIX
from keyplane.logs import configure_logging
from keyplane.service.services import Services

API_PREFIX = "/api/v1"
CONSOLE_PREFIX = "/console"


def create_app(
    services: Services | None = None, *, settings: Settings | None = None, hot_path: bool = True
) -> FastAPI:
    """Build the app.

    ``hot_path`` serves whoami and verify as plain ASGI (``api/hotpath.py``);
    off, FastAPI serves them (the tests compare the two).

    Given ``services``, the app uses them and their owner starts and closes them.
    Without, it opens its own from ``settings`` (or the environment) at start-up
    and closes them at shutdown: what ``keyplane serve``'s workers do.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "services", None) is not None:
            yield
            return
        resolved = settings or Settings.from_env()
        configure_logging(resolved.log_level, resolved.key_format)
        owned = Services.open(resolved)
        owned.start()
        app.state.services = owned
        try:
            yield
        finally:
            owned.close()
            app.state.services = None

    app = FastAPI(
        title="Keyplane",
        version=keyplane.__version__,
        summary="Issue, verify, track and revoke API keys.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    api = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(no_store)], responses=problem_responses()
    )
    for module in (whoami, verify, projects, keys, audit, leaks):
        api.include_router(module.router)
    app.include_router(health.router)
    app.include_router(api)
    app.mount(CONSOLE_PREFIX, create_console(lambda: app.state.services))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{CONSOLE_PREFIX}/keys", status_code=307)

    # IonQ's clients expect IonQ's error shape everywhere under /v0.4 (404s
    # included), so the surface is an app of its own with its own handlers.
    app.mount(IONQ_PREFIX, create_ionq_app(lambda: getattr(app.state, "services", None)))
    if hot_path:
        app.add_middleware(HotPath)  # inside the access log, which is added last (outermost)

    def size_limits() -> SizeLimits:
        running: Services | None = app.state.services
        if running is None:
            return SizeLimits(DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES)
        settings = running.settings
        return SizeLimits(
            settings.max_body_bytes, settings.max_header_bytes, settings.max_json_depth
        )

    def size_refusal(scope: Scope, problem: Problem) -> Response:
        path: str = scope.get("path", "")
        if path == IONQ_PREFIX or path.startswith(IONQ_PREFIX + "/"):
            return ionq_error_response(problem.status, problem.detail, problem.headers)
        return problem.response()

    app.add_middleware(SizeLimitMiddleware, limits=size_limits, render=size_refusal)
    app.add_middleware(AccessLogMiddleware)
    app.state.services = services
    return app


def create_server_app() -> HotPathFront:
    """What ``keyplane serve``'s workers run: the app with the hot path in front of it
    (``api/hotpath.py`` ``HotPathFront``), not inside it."""
    return HotPathFront(create_app(hot_path=False))
