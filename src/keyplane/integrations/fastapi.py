"""FastAPI: ``require_key(scopes=[...])`` as a dependency, and :func:`setup`.

.. code-block:: python

    app = FastAPI()
    setup(app, RemoteVerifier())          # or LocalVerifier.open()

    @app.get("/reports")
    def reports(key: KeyIdentity = require_key(scopes=["reports:read"])): ...

A refused request raises :class:`KeyplaneRejected`; the handler that
:func:`setup` installs answers it as problem+json (without it, FastAPI's own
handler still answers the right status and headers, as ``{"detail": ...}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.responses import Response

from keyplane.core.network import IPNetwork
from keyplane.http.problems import Problem
from keyplane.integrations import guard
from keyplane.integrations.asgi import STATE_KEY
from keyplane.integrations.verifiers import KeyIdentity, KeyVerifier

APP_STATE_KEY = "keyplane_verifier"

#: Declared for the OpenAPI document (the "Authorize" button of /docs) only;
#: the key is read by the guard, which also takes ``Authorization: apiKey``.
_BEARER_SCHEME = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
_HEADER_SCHEME = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")


class KeyplaneRejected(HTTPException):
    """A request without a usable key; carries the problem to answer."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.status, problem.detail, dict(problem.headers))
        self.problem = problem


async def _rejected(request: Request, error: Exception) -> Response:
    assert isinstance(error, KeyplaneRejected)
    return error.problem.response()


def setup(app: FastAPI, verifier: KeyVerifier | None = None) -> None:
    """Answer refusals as problem+json; given ``verifier``, make it require_key's default.

    Call it when you build the app: Starlette fixes its exception handlers when
    it starts. A verifier built later (in the lifespan) can be set by calling
    ``setup(app, verifier)`` again then.
    """
    app.add_exception_handler(KeyplaneRejected, _rejected)
    if verifier is not None:
        setattr(app.state, APP_STATE_KEY, verifier)


def require_key(
    scopes: Iterable[str] = (),
    *,
    verifier: KeyVerifier | None = None,
    trusted_proxies: tuple[IPNetwork, ...] = (),
) -> Any:
    """A dependency that yields the request's :class:`KeyIdentity` if its key holds ``scopes``.

    If :class:`~keyplane.integrations.asgi.KeyplaneMiddleware` already let the
    request in, only the scopes are checked (no second verification).
    """
    required = tuple(scopes)

    async def dependency(
        request: Request,
        _bearer: Annotated[object, Security(_BEARER_SCHEME)],
        _header: Annotated[object, Security(_HEADER_SCHEME)],
    ) -> KeyIdentity:
        known = request.scope.get("state", {}).get(STATE_KEY)
        if isinstance(known, KeyIdentity):
            outcome = guard.recheck(known, required)
        else:
            chosen = verifier or getattr(request.app.state, APP_STATE_KEY, None)
            if chosen is None:
                raise RuntimeError(
                    "require_key has no verifier: pass verifier=... or call "
                    "keyplane.integrations.fastapi.setup(app, verifier)"
                )
            facts = guard.RequestFacts(
                request.headers,
                request.url.path,
                request.url.query,
                request.client.host if request.client else None,
                trusted_proxies,
            )
            outcome = await guard.check_async(facts, chosen, required)
        if not outcome.granted or outcome.identity is None:
            raise KeyplaneRejected(guard.problem(outcome))
        request.scope.setdefault("state", {})[STATE_KEY] = outcome.identity
        return outcome.identity

    return Depends(dependency)
