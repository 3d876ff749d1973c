"""``keyplane serve``'s connection guard: read timeouts, connection bounds, quiet OS errors.

Uvicorn (0.54, h11) bounds none of what a slow client can hold. It arms its
keep-alive timeout only after an answer, and cancels it on the first byte
of the next request, so a connection that sends part of a request line (or
trickles its headers, or its body) is kept open forever; ``limit_concurrency``
is checked only once a whole request has arrived, so it does not bound
half-open connections either. Enough of them exhaust the worker's open-file
limit, and then asyncio fails every ``accept()`` with EMFILE, logging a
traceback for each try (CPython 3.11 retries up to the backlog, 2048 times,
per wake-up). Every other client is locked out.

:class:`GuardedH11Protocol`, Uvicorn's h11 protocol with four additions, is
the one place that holds the connection-level limits:

* a **header deadline** (``KEYPLANE_HEADER_TIMEOUT``): from the connection's
  opening, or from the previous answer, the whole request line and headers
  must be in within it, however they trickle; else the connection is closed
  (with a 408 when part of a request had arrived);
* a **body deadline** (``KEYPLANE_BODY_TIMEOUT``): once the headers are in,
  the whole body must be, else a 408 problem and the connection is closed
  (the application reads a disconnect);
* a **send deadline** (``KEYPLANE_SEND_TIMEOUT``): while bytes of an answer
  wait in the transport's buffer, the client must take some of them (the
  buffer must shrink) within it, else the connection is aborted at once
  (``transport.abort()``: ``close()`` would wait for the buffer to drain,
  which for a client that never reads is never). This covers an answer
  stalled mid-way (Uvicorn's ``send`` waits for ``resume_writing`` forever),
  the pipelined requests queued behind it (they add no time), and a
  connection closed or idle with its last answer unread;
* a **bound on open connections** per worker (``KEYPLANE_MAX_CONNECTIONS``,
  below the open-file limit by default) and per client address
  (``KEYPLANE_MAX_CONNECTIONS_PER_IP``, trusted proxies exempt): a
  connection over either is answered 503 (or 429) and closed as soon as it
  is accepted, so its descriptor is freed at once and EMFILE never comes.

Each of these is logged at most once per :data:`LOG_INTERVAL` with a count,
and :func:`new_event_loop` gives the worker an event loop whose repeated
errors (EMFILE on ``accept()`` from files opened elsewhere) are logged the
same way, not one traceback each.

The guard is a protocol, not ASGI middleware, because what it watches (bytes
before a request exists, descriptors) never reaches the application.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final, Literal

import h11
from uvicorn.config import Config
from uvicorn.loops.auto import auto_loop_factory
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from keyplane.config import Settings
from keyplane.core.network import IPNetwork, parse_ip
from keyplane.logs import Throttled

logger = logging.getLogger("keyplane.connections")

#: Seconds between two log lines about the same kind of event.
LOG_INTERVAL: Final = 10.0

Phase = Literal["headers", "body", "app"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The settings the guard enforces (picklable: workers receive them in the config)."""

    header_timeout: float
    body_timeout: float
    send_timeout: float
    max_connections: int
    #: 0: no per-address cap.
    max_connections_per_ip: int
    exempt: tuple[IPNetwork, ...]

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            send_timeout=settings.send_timeout,
            max_connections=settings.max_connections,
            max_connections_per_ip=settings.connections_per_ip,
            exempt=settings.trusted_proxies,
        )

    @property
    def sweep_interval(self) -> float:
        """Seconds between two looks for overdue connections: deadlines hold to within it."""
        shortest = min(self.header_timeout, self.body_timeout, self.send_timeout)
        return max(0.1, min(1.0, shortest / 5))

    def is_exempt(self, peer: str) -> bool:
        try:
            address = parse_ip(peer)
        except Exception:
            return False
        return any(address in network for network in self.exempt)


#: One per worker process: the guard's events and the event loop's errors.
events = Throttled(logger, LOG_INTERVAL)


def _raw_response(status: int, reason: str, code: str, detail: str, extra: str = "") -> bytes:
    """A whole problem answer, written before (or instead of) any request."""
    body = json.dumps(
        {
            "type": f"urn:keyplane:problem:{code.lower().replace('_', '-')}",
            "title": reason,
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\ncache-control: no-store\r\n{extra}"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


SERVER_FULL: Final = _raw_response(
    503,
    "Service Unavailable",
    "TOO_MANY_CONNECTIONS",
    "The server has as many connections open as it accepts; try again shortly.",
    "retry-after: 1\r\n",
)
ADDRESS_FULL: Final = _raw_response(
    429,
    "Too Many Requests",
    "TOO_MANY_CONNECTIONS",
    "This address has as many connections open as the server accepts from one address.",
    "retry-after: 1\r\n",
)
HEADERS_LATE: Final = _raw_response(
    408, "Request Timeout", "REQUEST_TIMEOUT", "The request headers did not arrive in time."
)
_BODY_LATE: Final = {
    "type": "urn:keyplane:problem:request-timeout",
    "title": "Request Timeout",
    "status": 408,
    "detail": "The request body did not arrive in time.",
    "code": "REQUEST_TIMEOUT",
}


class GuardedH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol with the deadlines and bounds of the module docstring.

    The config must be a :class:`~keyplane.cli.server.ServingConfig` (it
    carries ``connection_limits``).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = config.connection_limits  # type: ignore[attr-defined]
        self.tally = _tally(server_state)
        self.counted = False
        self.peer: str | None = None  # counted in tally.per_ip while set
        self.phase: Phase = "app"
        #: ``loop.time()`` by which the awaited part must be in (None: nothing awaited).
        self.deadline: float | None = None
        self.refused = False
        #: Bytes the sweep last saw waiting in the transport's buffer, and since
        #: when (``loop.time()``) the buffer has not shrunk (None: it was empty).
        self.unsent = 0
        self.stalled_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits, tally = self.limits, self.tally
        peer = self.client[0] if self.client else None
        if tally.total >= limits.max_connections:
            self._refuse(SERVER_FULL, "max_connections")
            return
        if peer is not None and limits.max_connections_per_ip and not limits.is_exempt(peer):
            if tally.per_ip[peer] >= limits.max_connections_per_ip:
                self._refuse(ADDRESS_FULL, "max_connections_per_ip")
                return
            tally.per_ip[peer] += 1
            self.peer = peer
        tally.total += 1
        self.counted = True
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline = None
        tally = self.tally
        if self.counted:
            tally.total -= 1
            self.counted = False
        if self.peer is not None:
            left = tally.per_ip[self.peer] - 1
            if left > 0:
                tally.per_ip[self.peer] = left
            else:
                del tally.per_ip[self.peer]
            self.peer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _refuse(self, answer: bytes, setting: str) -> None:
        self.refused = True
        events.warning(
            setting,
            "Refused a connection: over KEYPLANE_%s (%d per worker%s)",
            setting.upper(),
            getattr(self.limits, setting),
            "" if setting == "max_connections" else ", from one address",
        )
        self.transport.write(answer)
        self.transport.close()

    def _watch(self) -> None:
        """Start the deadline of the part of the request now awaited, once per part.

        A deadline is a time, not a timer: the sweep (:func:`_sweep`, a few times
        a second per worker) closes what is overdue. A timer per request cost
        whoami a tenth of its HTTP throughput.
        """
        if self.transport.is_closing():
            return
        theirs = self.conn.their_state
        if theirs is h11.SEND_BODY:
            phase: Phase = "body"
        elif theirs is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            phase = "headers"
        else:
            phase = "app"  # the request is in; the application has it
        if phase == self.phase:
            return
        self.phase = phase
        if phase == "headers":
            self.deadline = self.loop.time() + self.limits.header_timeout
        elif phase == "body":
            self.deadline = self.loop.time() + self.limits.body_timeout
        else:
            self.deadline = None
        if self.tally.sweep is None and self.deadline is not None:
            self.tally.sweep = self.loop.call_later(
                self.limits.sweep_interval, _sweep, self.loop, self.tally, self.connections
            )

    def expire(self) -> None:
        """Called by the sweep once :attr:`deadline` has passed."""
        self.deadline = None
        if self.phase == "headers":
            self._headers_late()
        elif self.phase == "body":
            self._body_late()

    def check_send(self, now: float) -> None:
        """Called by the sweep: abort the connection if the bytes waiting for its
        client have not shrunk for :attr:`ConnectionLimits.send_timeout`.

        Progress is the buffer shrinking between two sweeps: only the kernel
        taking bytes (the client reading) shrinks it, and while it is over the
        high-water mark nothing is added (Uvicorn's ``send`` waits), so a new
        pipelined answer cannot pass for progress. Below the mark, answers
        written meanwhile make it grow, which counts as no progress (even if
        the client read some): that lasts only until the mark is reached, after
        which the application waits and only the client moves the buffer.
        """
        unsent = self.transport.get_write_buffer_size()
        if not unsent:
            self.unsent, self.stalled_since = 0, None
            return
        stalled_since = self.stalled_since
        if stalled_since is None or unsent < self.unsent:
            self.unsent, self.stalled_since = unsent, now
            return
        self.unsent = unsent
        if now - stalled_since >= self.limits.send_timeout:
            self._send_late()

    def _send_late(self) -> None:
        events.warning(
            "send_timeout",
            "Aborted a connection whose client read none of its answer for "
            "KEYPLANE_SEND_TIMEOUT (%.1f s)",
            self.limits.send_timeout,
        )
        self.stalled_since = None
        # abort(), not close(): close() waits for the buffer to drain, and frees
        # nothing while the client reads nothing. connection_lost follows, which
        # tells the application of the disconnect and frees the slot.
        self.transport.abort()

    def _headers_late(self) -> None:
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a request came: say why it is closed
            events.warning(
                "header_timeout",
                "Closed a connection whose request headers took over KEYPLANE_HEADER_TIMEOUT "
                "(%.1f s)",
                self.limits.header_timeout,
            )
            self.transport.write(HEADERS_LATE)
        self.transport.close()

    def _body_late(self) -> None:
        if self.transport.is_closing():
            return
        events.warning(
            "body_timeout",
            "Closed a connection whose request body took over KEYPLANE_BODY_TIMEOUT (%.1f s)",
            self.limits.body_timeout,
        )
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            body = json.dumps(_BODY_LATE).encode()
            headers = [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ]
            try:
                self.transport.write(
                    self.conn.send(
                        h11.Response(status_code=408, headers=headers, reason=b"Request Timeout")
                    )
                    or b""
                )
                self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
                self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
            except h11.LocalProtocolError:  # pragma: no cover - a state h11 refuses: just close
                pass
        if cycle is not None:
            # The application reads a disconnect, and whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


class _Tally:
    """Open connections of one server (one worker): in all, and per client address
    (refused connections, closing already, are not counted); and its sweep."""

    __slots__ = ("per_ip", "sweep", "total")

    def __init__(self) -> None:
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.sweep: asyncio.TimerHandle | None = None


def _sweep(loop: asyncio.AbstractEventLoop, tally: _Tally, connections: set[Any]) -> None:
    """Close the connections whose deadline has passed, abort those whose client has
    read nothing for the send timeout; again in a moment while any connection is open.

    Closing connections are still looked at (they stay in ``connections`` until
    their buffer drains): a ``close()`` whose answer is never read ends in the
    send deadline's ``abort()``."""
    now = loop.time()
    interval = None
    for connection in list(connections):
        if isinstance(connection, GuardedH11Protocol):
            interval = connection.limits.sweep_interval
            deadline = connection.deadline
            if deadline is not None and now >= deadline:
                connection.expire()
            connection.check_send(now)
    tally.sweep = (
        None if interval is None else loop.call_later(interval, _sweep, loop, tally, connections)
    )


def _tally(server_state: ServerState) -> _Tally:
    tally: _Tally | None = getattr(server_state, "keyplane_tally", None)
    if tally is None:
        tally = _Tally()
        server_state.keyplane_tally = tally  # type: ignore[attr-defined]
    return tally


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Uvicorn's usual event loop, whose repeated errors are logged once per interval.

    ``keyplane serve`` names this as Uvicorn's ``loop``, so each worker builds its own.
    """
    loop = auto_loop_factory(use_subprocess=False)()
    loop.set_exception_handler(_quiet_repeats)
    return loop


def _quiet_repeats(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    message = str(context.get("message", "event loop error"))
    skipped = events.due(f"loop:{message}:{type(error).__name__}")
    if skipped is None:
        return
    if isinstance(error, OSError):
        # EMFILE on accept() and the like: the condition matters, its traceback does not.
        suffix = f" (and {skipped} more in the last {LOG_INTERVAL:.0f} s)" if skipped else ""
        logger.error("%s: %s%s", message, error, suffix)
        return
    if skipped:
        context = {**context, "message": f"{message} (and {skipped} more like it)"}
    loop.default_exception_handler(context)
