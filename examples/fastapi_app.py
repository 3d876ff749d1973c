"""A FastAPI service whose API is protected by Keyplane keys.

Run it against a Keyplane server (remote mode, the default):

    export KEYPLANE_URL=http://127.0.0.1:8000
    export KEYPLANE_API_KEY=kp_...   # this service's own key, with the keys:verify scope
    uvicorn examples.fastapi_app:app --port 9000

or in-process on the same database as the server (local mode):

    KEYPLANE_VERIFY_MODE=local uvicorn examples.fastapi_app:app --port 9000

Then: curl -H "Authorization: Bearer $CALLER_KEY" http://127.0.0.1:9000/reports
(200 with a key that holds reports:read, 401 without a key, 403 without the scope).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI

from keyplane.integrations import KeyIdentity, KeyVerifier, verifier_from_env
from keyplane.integrations.fastapi import require_key, setup

ReportReader = Annotated[KeyIdentity, require_key(scopes=["reports:read"])]
AnyKey = Annotated[KeyIdentity, require_key()]


def create_app(verifier: KeyVerifier | None = None) -> FastAPI:
    """The app; without ``verifier`` it builds one from the environment at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chosen = verifier if verifier is not None else verifier_from_env()
        setup(app, chosen)
        try:
            yield
        finally:
            if verifier is None:  # built here, closed here
                await chosen.aclose()

    app = FastAPI(title="Reports (protected by Keyplane)", lifespan=lifespan)
    setup(app, verifier)  # now: the problem+json handler must be in place before start-up

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/reports")
    def reports(key: ReportReader) -> dict[str, Any]:
        return {
            "reports": ["2026-q3", "2026-q4"],
            "key_id": key.key_id,
            "project_id": key.project_id,
        }

    @app.get("/me")
    def me(key: AnyKey) -> dict[str, Any]:
        return {"key_id": key.key_id, "name": key.name, "scopes": list(key.scopes)}

    return app


app = create_app()
