"""A real webhook receiver for the tests: a threaded ``http.server`` on 127.0.0.1 that
checks the Standard Webhooks signature of **every** request it gets with the
``standardwebhooks`` library, and can misbehave the ways receivers do.

``receiver.behave(mode)`` picks the next answers: ``ok`` (204), ``status:500``,
``hang`` (read the request, answer nothing until stopped), ``redirect`` (302 to
another URL), ``huge`` (a 200 with 5 MiB of body), ``drip`` (headers, then a byte
a second), ``drip-headers`` (the status line, then a header byte a second),
``reset`` (close the connection without an answer).
"""

from __future__ import annotations

import http.server
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: Indexes (in ``Receiver.secrets``) of the secrets whose signature is valid.
    verified_by: list[int]
    received_at: float
    payload: Any = None


@dataclass
class Receiver:
    host: str
    port: int
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    mode: str = "ok"
    arrived: threading.Condition = field(default_factory=threading.Condition)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def behave(self, mode: str) -> None:
        self.mode = mode

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"the receiver got {len(self.received)} requests, expected {count}"
                    )
                self.arrived.wait(left)
            return list(self.received)

    def verify(self, secret: str, item: Received) -> Any:
        """Raise unless ``secret`` signed ``item`` (the library's check, as a receiver does)."""
        return Webhook(secret).verify(item.body, item.headers)


class _Handler(http.server.BaseHTTPRequestHandler):
    receiver: Receiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        receiver = self.receiver
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        payload = None
        for index, secret in enumerate(receiver.secrets):
            try:
                payload = Webhook(secret).verify(body, headers)
                verified.append(index)
            except WebhookVerificationError:
                continue
        with receiver.arrived:
            receiver.received.append(
                Received(self.path, headers, body, verified, time.monotonic(), payload)
            )
            receiver.arrived.notify_all()
        mode = receiver.mode
        if not verified:  # a receiver refuses what it cannot verify
            self._answer(401, b"bad signature")
        elif mode == "ok":
            self._answer(204, b"")
        elif mode.startswith("status:"):
            self._answer(int(mode.split(":")[1]), b"receiver error " * 200)
        elif mode == "hang":
            receiver.stopping.wait(60)
        elif mode == "redirect":
            self.send_response(302)
            self.send_header("location", "http://127.0.0.1:1/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()
        elif mode == "huge":
            size = 5 * 1024 * 1024
            self.send_response(200)
            self.send_header("content-length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(size // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass  # Keyplane stops reading: that is the point
        elif mode == "drip":
            self.send_response(200)
            self.send_header("content-length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    if receiver.stopping.wait(1.0):
                        break
                    self.wfile.write(b".")
                    self.wfile.flush()
            except OSError:
                pass
        elif mode == "drip-headers":  # the status line, then a header byte a second
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                for char in b"x-slow: " + b"a" * 100:
                    if receiver.stopping.wait(1.0):
                        break
                    self.wfile.write(bytes([char]))
                    self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True
        elif mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        else:
            raise AssertionError(f"unknown mode {mode}")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A receiver on a free port of 127.0.0.1, stopped at the end."""
    handler = type("Handler", (_Handler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    receiver = Receiver("127.0.0.1", server.server_address[1])
    handler.receiver = receiver  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.stopping.set()
        server.shutdown()
        server.server_close()
