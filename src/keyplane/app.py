"""Assembly: the one Keyplane application, what ``keyplane serve`` runs and the tests test.

:func:`create_app` builds it: a FastAPI app (the routers, the console, the
IonQ surface, the services' lifecycle) behind a serving stack built in one
place, :meth:`KeyplaneApp.build_serving_stack` (as Starlette builds its
middleware stack), in this order::

    access log -> size limits -> hot path -> FastAPI (all of it: telemetry,
                                             error handling, the routes)

so every request, the hot ones included, is logged and held to the size
limits. There is no second assembly: ``keyplane serve`` names
:data:`keyplane.cli.server.APP_FACTORY`, this module's ``create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import keyplane
from keyplane.api import (
    audit,
    events,
    health,
    keys,
    leaks,
    policies,
    projects,
    verify,
    webhooks,
    whoami,
)
from keyplane.api.dependencies import no_store
from keyplane.api.errors import install_error_handlers
from keyplane.api.hotpath import HotPath
from keyplane.api.schemas import problem_responses
from keyplane.config import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_JSON_DEPTH,
    Settings,
)
from keyplane.console import create_console
from keyplane.core.paths import API_PREFIX, CONSOLE_PREFIX
from keyplane.http.access_log import AccessLogMiddleware
from keyplane.http.problems import Problem
from keyplane.http.size_limits import SizeLimitMiddleware, SizeLimits
from keyplane.ionq import feature as ionq
from keyplane.logs import configure_logging
from keyplane.service.services import Services


class KeyplaneApp(FastAPI):
    """FastAPI, behind the serving layers Keyplane puts in front of it (see the module)."""

    _serving_stack: ASGIApp | None = None
    _known_limits: tuple[Services | None, SizeLimits] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # as Starlette does: the hot path finds the services on it
        stack = self._serving_stack
        if stack is None:
            stack = self._serving_stack = self.build_serving_stack()
        await stack(scope, receive, send)

    def build_serving_stack(self) -> ASGIApp:
        """The whole stack, outermost first: access log, size limits, hot path, FastAPI.

        The one place the layers are put together. FastAPI here is all of it:
        its entry (``FastAPI.__call__``: lifespan, its telemetry) and its own
        middleware stack (server errors, its body limit, the exception handlers,
        the routes). The hot path sits in front of FastAPI, whose layers would
        cost about as much as the hot request itself (its telemetry check alone
        ~3 µs), and answers an unexpected error with the same 500 problem
        (``api/hotpath.py``); it sits behind the size limits and the access log,
        so they hold for it as for every other route.
        """
        fastapi: ASGIApp = super().__call__
        hot = HotPath(fastapi)
        limited = SizeLimitMiddleware(hot, limits=self._size_limits, render=_size_refusal)
        return AccessLogMiddleware(limited)

    def _size_limits(self) -> SizeLimits:
        """The running services' limits (asked on every request: kept per services)."""
        running: Services | None = getattr(self.state, "services", None)
        known = self._known_limits
        if known is not None and known[0] is running:
            return known[1]
        if running is None:
            limits = SizeLimits(
                DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_JSON_DEPTH
            )
        else:
            settings = running.settings
            limits = SizeLimits(
                settings.max_body_bytes, settings.max_header_bytes, settings.max_json_depth
            )
        self._known_limits = (running, limits)
        return limits


def _size_refusal(scope: Scope, problem: Problem) -> Response:
    path: str = scope.get("path", "")
    return ionq.size_refusal(path, problem) or problem.response()


def create_app(
    services: Services | None = None, *, settings: Settings | None = None
) -> KeyplaneApp:
    """Build the app: the one assembly (``keyplane serve``'s workers call this, with no
    arguments; so does the tests' ``app`` fixture).

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

    app = KeyplaneApp(
        title="Keyplane",
        version=keyplane.__version__,
        summary="Issue, verify, track and revoke API keys.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    api = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(no_store)], responses=problem_responses()
    )
    for module in (whoami, verify, projects, keys, audit, leaks, events, policies, webhooks):
        api.include_router(module.router)
    app.include_router(health.router)
    app.include_router(api)
    console = create_console(lambda: app.state.services)
    app.mount(CONSOLE_PREFIX, console)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{CONSOLE_PREFIX}/keys", status_code=307)

    # The IonQ feature: /v0.4 (an app of its own, IonQ's error shape) and the console's Jobs page.
    ionq.install(app, console, lambda: getattr(app.state, "services", None))
    app.state.services = services
    return app
