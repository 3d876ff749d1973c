"""Request size limits: a pure ASGI middleware that refuses oversized headers and bodies,
and JSON bodies nested too deep.

The body limit holds for streamed (chunked) bodies too: the bytes are counted
as the application reads them, and the answer is a ``413`` problem as soon as
the count passes the limit, before the rest is read. A declared
``Content-Length`` over the limit is refused before the application runs; one
within it bounds an HTTP/1.x body already (the server reads no more), so such
a body is not counted again: this runs in front of the hot path on every
request, and a request with no body passes straight through.

Every body that a route may read as JSON (any content type but a form's) is
scanned once complete, before the application sees its last chunk
(``http/json_scan.py``): nested deeper than ``KEYPLANE_MAX_JSON_DEPTH``, or
holding a lone surrogate escape, it is refused with a ``400`` problem. Being
here, in front of every route of every surface, no route can skip the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyplane.http.json_scan import Verdict, scan
from keyplane.http.problems import Problem

#: Content types a route reads as a form, never as JSON: left unscanned.
FORM_CONTENT_TYPES: Final = ("application/x-www-form-urlencoded", "multipart/form-data")
_FORM_TYPES: Final = tuple(kind.encode() for kind in FORM_CONTENT_TYPES)


def body_too_large(limit: int) -> Problem:
    return Problem(
        413,
        "body-too-large",
        f"The request body is larger than this server accepts ({limit} bytes).",
        {"code": "BODY_TOO_LARGE", "limit": limit},
    )


def headers_too_large(limit: int) -> Problem:
    return Problem(
        431,
        "headers-too-large",
        f"The request headers are larger than this server accepts ({limit} bytes).",
        {"code": "HEADERS_TOO_LARGE", "limit": limit},
    )


def _bad_content_length() -> Problem:
    return Problem(
        400,
        "bad-content-length",
        "The Content-Length header is not a number.",
        {"code": "BAD_REQUEST"},
    )


def json_too_deep(limit: int) -> Problem:
    return Problem(
        400,
        "json-too-deep",
        f"The request body nests arrays and objects deeper than this server accepts ({limit}).",
        {"code": "JSON_TOO_DEEP", "limit": limit},
    )


def lone_surrogate() -> Problem:
    return Problem(
        400,
        "invalid-json",
        "The request body is not valid JSON text: it escapes a lone UTF-16 surrogate.",
        {"code": "INVALID_JSON"},
    )


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """``KEYPLANE_MAX_BODY_BYTES``, ``KEYPLANE_MAX_HEADER_BYTES`` and
    ``KEYPLANE_MAX_JSON_DEPTH``; ``None`` means no limit."""

    max_body_bytes: int | None
    max_header_bytes: int | None
    max_json_depth: int | None


class SizeLimitMiddleware:
    """Refuse requests whose headers or body exceed the limits.

    ``limits`` is asked on every request (a getter, so the app can take them from
    the settings its lifespan loads); it must be cheap. ``render`` turns the
    refusal into the answer for that request (a surface with its own error shape,
    such as the IonQ one, answers in it); by default, the problem itself.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Callable[[], SizeLimits],
        render: Callable[[Scope, Problem], Response] | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.render = render or _as_problem

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits()
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        size = 0  # counted as on the wire: "name: value\r\n"
        declared: bytes | None = None
        chunked = False
        content_type = b""
        for name, value in headers:  # ASGI servers give header names in lower case
            size += len(name) + len(value) + 4
            if name == b"content-length" and declared is None:
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-type" and not content_type:
                content_type = value.lower()  # the first, as Starlette and FastAPI read it
        if limits.max_header_bytes is not None and size > limits.max_header_bytes:
            await _answer(send, self.render(scope, headers_too_large(limits.max_header_bytes)))
            return
        limit = limits.max_body_bytes
        depth = limits.max_json_depth
        if depth is not None and content_type.startswith(_FORM_TYPES):
            depth = None
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _answer(send, self.render(scope, _bad_content_length()))
                return
            if limit is not None and length > limit:
                await _answer(send, self.render(scope, body_too_large(limit)))
                return
        framed = not chunked and scope.get("http_version") in _FRAMED_BY_LENGTH
        if framed:
            # HTTP/1.x without Transfer-Encoding: the server hands over exactly
            # Content-Length bytes (checked above), or none without one. Only a
            # chunked body (or HTTP/2's unframed ones) must be counted as read.
            limit = None
            if declared is None:
                depth = None  # no body at all: nothing to scan
        if limit is None and depth is None:
            await self.app(scope, receive, send)
            return
        render = self.render
        await _LimitedRequest(
            self.app, limit, depth, lambda problem: render(scope, problem), receive, send
        ).run(scope)


#: HTTP versions whose request body is Content-Length bytes, or none, unless chunked.
_FRAMED_BY_LENGTH: Final = frozenset({"1.0", "1.1"})


class _LimitedRequest:
    """One request whose body is counted as it is read."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int | None,
        depth: int | None,
        render: Callable[[Problem], Response],
        receive: Receive,
        send: Send,
    ) -> None:
        self.app = app
        self.limit = limit
        self.depth = depth
        self.render = render
        self.downstream_receive = receive
        self.downstream_send = send
        self.received = 0
        #: The body so far, kept only while it is to be scanned as JSON.
        self.chunks: list[bytes] = []
        self.response_started = False
        #: Set once this middleware answered (413, 400) itself: the app's own answer is dropped.
        self.refused = False

    async def run(self, scope: Scope) -> None:
        try:
            await self.app(scope, self.receive, self.send)
        except Exception:
            if not self.refused:
                raise
            # The app failed because its body was cut short; the client already has its 4xx.

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.downstream_receive()
        if message["type"] != "http.request":
            return message
        chunk: bytes = message.get("body", b"")
        self.received += len(chunk)
        if self.limit is not None and self.received > self.limit:
            return await self.refuse(body_too_large(self.limit))
        if self.depth is not None:
            self.chunks.append(chunk)
            if not message.get("more_body", False):
                # The app has not seen the end yet, so it has parsed nothing.
                body = b"".join(self.chunks)
                self.chunks = []
                verdict = scan(body, self.depth)
                if verdict is Verdict.TOO_DEEP:
                    return await self.refuse(json_too_deep(self.depth))
                if verdict is Verdict.LONE_SURROGATE:
                    return await self.refuse(lone_surrogate())
        return message

    async def refuse(self, problem: Problem) -> Message:
        self.refused = True
        if not self.response_started:
            self.response_started = True
            await _answer(self.downstream_send, self.render(problem))
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.downstream_send(message)


def _as_problem(scope: Scope, problem: Problem) -> Response:
    return problem.response()


async def _answer(send: Send, response: Response) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [*response.raw_headers, (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": response.body})
