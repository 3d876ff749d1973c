"""Request size limits: a pure ASGI middleware that refuses oversized headers and bodies.

The body limit holds for streamed (chunked) bodies too: the bytes are counted
as the application reads them, and the answer is a ``413`` problem as soon as
the count passes the limit, before the rest is read. A declared
``Content-Length`` over the limit is refused before the application runs; one
within it bounds an HTTP/1.x body already (the server reads no more), so such
a request, and one with no body, is passed on uncounted: this runs in front
of the hot path on every request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyplane.http.problems import Problem


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


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """``KEYPLANE_MAX_BODY_BYTES`` and ``KEYPLANE_MAX_HEADER_BYTES``; ``None`` means no limit."""

    max_body_bytes: int | None
    max_header_bytes: int | None


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
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length" and declared is None:
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if limits.max_header_bytes is not None and size > limits.max_header_bytes:
            await _answer(send, self.render(scope, headers_too_large(limits.max_header_bytes)))
            return
        limit = limits.max_body_bytes
        if limit is None:
            await self.app(scope, receive, send)
            return
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _answer(send, self.render(scope, _bad_content_length()))
                return
            if length > limit:
                await _answer(send, self.render(scope, body_too_large(limit)))
                return
        if not chunked and scope.get("http_version") in _FRAMED_BY_LENGTH:
            # HTTP/1.x without Transfer-Encoding: the server hands over exactly
            # Content-Length bytes (checked above), or none without one. Only a
            # chunked body (or HTTP/2's unframed ones) must be counted as read.
            await self.app(scope, receive, send)
            return
        refusal = lambda: self.render(scope, body_too_large(limit))  # noqa: E731 - only if refused
        await _LimitedRequest(self.app, limit, refusal, receive, send).run(scope)


#: HTTP versions whose request body is Content-Length bytes, or none, unless chunked.
_FRAMED_BY_LENGTH: Final = frozenset({"1.0", "1.1"})


class _LimitedRequest:
    """One request whose body is counted as it is read."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        refusal: Callable[[], Response],
        receive: Receive,
        send: Send,
    ) -> None:
        self.app = app
        self.limit = limit
        self.refusal = refusal
        self.downstream_receive = receive
        self.downstream_send = send
        self.received = 0
        self.response_started = False
        #: Set once this middleware answered 413 itself: the app's own answer is dropped.
        self.refused = False

    async def run(self, scope: Scope) -> None:
        try:
            await self.app(scope, self.receive, self.send)
        except Exception:
            if not self.refused:
                raise
            # The app failed because its body was cut short; the client already has its 413.

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.downstream_receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.refused = True
                if not self.response_started:
                    self.response_started = True
                    await _answer(self.downstream_send, self.refusal())
                return {"type": "http.disconnect"}
        return message

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
