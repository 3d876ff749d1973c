"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1), and reading what it got."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

_LINK = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class Received:
    to: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content())

    def link(self) -> str:
        """The one link of the text part."""
        links = _LINK.findall(self.text)
        assert links, self.text
        return str(links[0])

    def path(self) -> str:
        """The link without scheme and host (for a test client)."""
        return "/" + self.link().split("/", 3)[3]


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self._server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        with self._server.lock:
            if self._server.refuse_next:
                return self._server.refuse_next.pop(0)
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self._server.received.append(Received(tuple(envelope.rcpt_tos), message))
        return "250 OK"


class MailServer:
    """aiosmtpd in a thread; ``refuse_next`` holds answers for the next messages
    (``"451 4.3.0 try again later"``) before it accepts again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.refuse_next: list[str] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [item for item in self.received if address in item.to]

    def wait_for(self, address: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """The messages to ``address`` once there are ``count`` (a worker sends them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} message(s) to {address} expected, got {self.to(address)}")


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
