"""The key-protected hot routes, served as plain ASGI: ``GET /api/v1/whoami`` and
``POST /api/v1/verify``.

Every API request authenticates with a key, and these two routes do nothing
else, so FastAPI's per-request machinery (dependency resolution, request and
response models, the thread-pool hop of its serializer) would cost several
times the work itself. This middleware answers them directly and hands every
other request to the app unchanged.

It sits between the size limits and FastAPI (``app.py``
``KeyplaneApp.build_serving_stack``): the access log and the size limits
hold for it, and FastAPI's own outer layers (server errors, telemetry, its
body limit), which would cost about as much as the hot request, do not run
for it; it answers an unexpected error with the 500 problem FastAPI's
server-error layer would have sent.

The answers are the routes' answers, byte for byte: the same functions decide
(``dependencies.check_key``, ``verify.run_verify``), the same models
serialize, the same ``Problem`` objects render errors, and the headers come in
the same order. Anything out of the ordinary (a body that is not JSON or does
not validate, a missing content type, another method) is passed on, with the
body it already read, to the FastAPI route, which then answers exactly as it
always did. The FastAPI routes stay registered, so OpenAPI and /docs still
describe them. ``tests/api/test_hotpath.py`` compares both paths.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyplane.api.dependencies import Authenticated, check_key, check_scope
from keyplane.api.errors import database_unavailable
from keyplane.api.schemas import VerifyRequest, WhoAmI
from keyplane.api.verify import run_verify
from keyplane.core import scopes
from keyplane.core.errors import KeyplaneError
from keyplane.core.grant import KeyState
from keyplane.core.paths import VERIFY_PATH, WHOAMI_PATH
from keyplane.http.problems import problem_for
from keyplane.http.services import services_or_none
from keyplane.service.availability import DATABASE_UNAVAILABLE_ERRORS, log_database_unavailable
from keyplane.service.services import Services

#: Request headers the hot path reads; every other header is skipped unread.
_WANTED: Final = frozenset({b"authorization", b"x-api-key", b"x-forwarded-for", b"user-agent"})
_JSON_TYPES: Final = frozenset({"application/json", "application/json; charset=utf-8"})
_JSON_HEADERS: Final = ((b"content-type", b"application/json"), (b"cache-control", b"no-store"))
#: Bodies larger than this go to FastAPI (a verify request is a few hundred bytes).
_MAX_BODY: Final = 65_536


class HotPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: key id -> (the cached KeyState, its whoami body): rebuilt when the state changes.
        self._whoami_bodies: dict[str, tuple[KeyState, bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_hot(scope):
            services = _services(scope)
            if services is not None:
                rest = await self._answer_or_fail(services, scope, receive, send)
                if rest is None:
                    return
                receive = rest
        await self.app(scope, receive, send)

    async def _answer_or_fail(
        self, services: Services, scope: Scope, receive: Receive, send: Send
    ) -> Receive | None:
        """:meth:`answer`; an unexpected error gets a 500 problem, then is raised, as
        Starlette's ServerErrorMiddleware does (the hot path runs outside it)."""
        try:
            return await self.answer(services, scope, receive, send)
        except Exception as error:
            # An answer starts only at its last step (``_send_json``, ``_problem``),
            # so an error almost always comes before it. If it came after, the
            # server refuses this second start; the error is raised all the same.
            response = problem_for(error).redacted(services.settings.key_format).response()
            with contextlib.suppress(Exception):
                await response(scope, receive, send)
            raise

    async def answer(
        self, services: Services, scope: Scope, receive: Receive, send: Send
    ) -> Receive | None:
        """Answer a hot request (see :func:`_is_hot`); None when answered, else the
        ``receive`` to hand the request on with (it replays what was read)."""
        try:
            if scope["path"] == WHOAMI_PATH:
                await self._whoami(services, scope, receive, send)
                return None
            return await self._verify(services, scope, receive, send)
        except DATABASE_UNAVAILABLE_ERRORS as error:
            # As the API's handler: a 503 problem with Retry-After, one log line.
            log_database_unavailable(scope["method"], scope["path"], error)
            response = database_unavailable().response()
            await response(scope, receive, send)
            return None

    async def _whoami(self, services: Services, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        try:
            auth, limit_headers = await _authenticate(services, scope, headers)
        except KeyplaneError as error:
            await _problem(services, error, scope, receive, send)
            return
        key = auth.key
        cached = self._whoami_bodies.get(key.key_id)
        if cached is None or cached[0] is not key:
            if len(self._whoami_bodies) > max(services.settings.key_cache_size, 1) * 2:
                self._whoami_bodies.clear()
            cached = self._whoami_bodies[key.key_id] = (key, _dump(WhoAmI.model_validate(key)))
        await _send_json(send, cached[1], limit_headers)

    async def _verify(
        self, services: Services, scope: Scope, receive: Receive, send: Send
    ) -> Receive | None:
        headers = _headers(scope)
        read = await _read_body(receive)
        if read is None:
            return None  # the client is gone: nobody to answer
        body, complete = read
        request = None
        if (
            complete
            and len(body) <= _MAX_BODY
            and headers.get("content-type", "").lower() in _JSON_TYPES
        ):
            try:
                request = VerifyRequest.model_validate_json(body)
            except ValidationError:
                request = None
        if request is None:
            # Not the common case: FastAPI answers it as it always did, from the same bytes.
            return _replay(body, complete, receive)
        try:
            auth, limit_headers = await _authenticate(services, scope, headers)
            check_scope(auth.caller, scopes.KEYS_VERIFY)
            answer = await run_verify(services, auth.caller, request)
        except KeyplaneError as error:
            await _problem(services, error, scope, receive, send)
            return None
        await _send_json(send, _dump(answer), limit_headers)
        return None


def _is_hot(scope: Scope) -> bool:
    path = scope["path"]
    return bool(
        (path == WHOAMI_PATH and scope["method"] == "GET")
        or (path == VERIFY_PATH and scope["method"] == "POST")
    )


def _services(scope: Scope) -> Services | None:
    app = scope.get("app")
    return services_or_none(app) if app is not None else None


def _headers(scope: Scope) -> dict[str, str]:
    """The few request headers the hot path reads, first occurrence wins (as Starlette's)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED or name == b"content-type":
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


async def _authenticate(
    services: Services, scope: Scope, headers: dict[str, str]
) -> tuple[Authenticated, dict[str, str]]:
    client = scope.get("client")
    query = scope.get("query_string", b"").decode("latin-1")
    return await check_key(services, scope["path"], query, headers, client[0] if client else None)


def _dump(model: Any) -> bytes:
    dumped: bytes = model.__pydantic_serializer__.to_json(model)
    return dumped


async def _send_json(send: Send, body: bytes, extra: dict[str, str]) -> None:
    raw = [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
    for name, value in extra.items():
        raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _problem(
    services: Services, error: KeyplaneError, scope: Scope, receive: Receive, send: Send
) -> None:
    response = problem_for(error).redacted(services.settings.key_format).response()
    await response(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[bytes, bool] | None:
    """The body, and whether that is all of it. Reading stops past :data:`_MAX_BODY`
    (the rest is left for FastAPI and its body limit). None if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > _MAX_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A ``receive`` that hands over what was already read, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay
