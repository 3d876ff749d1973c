"""An access log that cannot leak a key: no query values, no headers.

Uvicorn's own access log prints the full request line, query string
included, so ``keyplane serve`` turns it off and uses this instead.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyplane.core.keys import BODY_LENGTH

logger = logging.getLogger("keyplane.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log_request(scope, status, started)


def log_request(scope: Scope, status: int, started: float) -> None:
    """The access log line of one request (``started``: its ``time.perf_counter()``)."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            '%s - "%s %s" %d %.1fms',
            _peer(scope),
            scope.get("method", "-"),
            safe_target(scope),
            status,
            (time.perf_counter() - started) * 1000,
        )


#: Anything shaped like a key of any prefix (the path of a request that put a key
#: in its URL, refused with 400, must not log it either). Ids are shorter.
_KEY_SHAPED = re.compile(rf"[a-z][a-z0-9]{{0,15}}_[0-9A-Za-z]{{{BODY_LENGTH}}}")


def safe_target(scope: Scope) -> str:
    """The path (any key-shaped part masked), with query parameter names but not values."""
    path: str = _KEY_SHAPED.sub("<key>", scope.get("path", ""))
    query = scope.get("query_string", b"").decode("latin-1")
    if not query:
        return path
    names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
    return path + "?" + "&".join(f"{_KEY_SHAPED.sub('<key>', name[:40])}=…" for name in names[:20])


def _peer(scope: Scope) -> Any:
    client = scope.get("client")
    return client[0] if client else "-"
