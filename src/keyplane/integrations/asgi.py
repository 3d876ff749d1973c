"""A pure ASGI middleware that lets in only requests with a good Keyplane key.

Works with any ASGI app (Starlette, FastAPI, Django's ASGI handler, ...).
On success the key's :class:`KeyIdentity` is in ``scope["state"]["keyplane"]``
(``request.state.keyplane`` in Starlette and FastAPI); otherwise the request
gets a problem+json 400/401/403/429/503 and never reaches the app.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from keyplane.integrations import guard
from keyplane.integrations._middleware import GuardedApp

STATE_KEY = "keyplane"


class KeyplaneMiddleware(GuardedApp[ASGIApp]):
    """``app = KeyplaneMiddleware(app, verifier, scopes=["reports:read"])``; the
    options are :class:`~keyplane.integrations._middleware.GuardedApp`'s."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or guard.excluded(
            scope.get("path", ""), self.exclude_paths
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        facts = guard.RequestFacts(
            Headers(scope=scope),
            scope.get("path", ""),
            scope.get("query_string", b"").decode("latin-1"),
            client[0] if client else None,
            self.trusted_proxies,
        )
        outcome = await guard.check_async(facts, self.verifier, self.scopes)
        if outcome.granted:
            scope.setdefault("state", {})[STATE_KEY] = outcome.identity
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        await guard.problem(outcome).response()(scope, receive, send)
