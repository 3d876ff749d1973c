"""The v0.4 sub-application: its own routes and its own (IonQ-shaped) errors."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

import keyplane
from keyplane.http.services import attach
from keyplane.ionq.web.errors import install_error_handlers
from keyplane.ionq.web.routes import router
from keyplane.service.services import Services


def create_ionq_app(services: Callable[[], Services | None]) -> FastAPI:
    """The app to mount at ``/v0.4``; ``services`` returns the host app's services."""
    app = FastAPI(
        title="Keyplane: IonQ-compatible API",
        version=keyplane.__version__,
        summary="IonQ's v0.4 jobs API on Keyplane keys and a built-in ideal simulator.",
    )
    attach(app, services)
    install_error_handlers(app, services)
    app.include_router(router)
    return app
