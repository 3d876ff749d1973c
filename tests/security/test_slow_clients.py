"""Slow and greedy clients against a real ``keyplane serve`` (a separate process).

Half-open connections (part of a request line, then nothing), trickled
headers and slow bodies, with the server's open-file limit lowered to 256
(``resource.setrlimit`` in the child). Bounded: at most 300 connections per
test, every wait has a deadline, and the server log is measured in bytes.
The attacking connections come from 127.0.0.2, the well-behaved client
from 127.0.0.1 (both loopback).
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.processes import fresh, server

pytestmark = pytest.mark.slow

ATTACKER = "127.0.0.2"
PARTIAL = b"GET /api/v1/whoami HTTP/1.1\r\nHost: keyplane\r\n"
FILES = 256
HALF_OPEN = 300
HEADER_TIMEOUT = 2.0
#: What a server under attack may write to its log in the whole test.
LOG_BUDGET = 20_000


def _port(base: str) -> int:
    port = urlsplit(base).port
    assert port is not None
    return port


@contextmanager
def half_open(base: str, count: int = HALF_OPEN) -> Iterator[list[socket.socket]]:
    """``count`` connections from :data:`ATTACKER`, each with part of a request line."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            connection = socket.socket()
            opened.append(connection)
            connection.settimeout(5)
            connection.bind((ATTACKER, 0))
            connection.connect(("127.0.0.1", _port(base)))
            with contextlib.suppress(OSError):  # refused and closed by the server already
                connection.sendall(PARTIAL)
        yield opened
    finally:
        for connection in opened:
            connection.close()


def served_within(base: str, seconds: float) -> float:
    """Seconds until a normal client gets 200 from /healthz; fails past ``seconds``."""
    started = time.monotonic()
    answers: list[object] = []
    while time.monotonic() - started < seconds:
        try:
            response = fresh.get(f"{base}/healthz", timeout=1)
            if response.status_code == 200:
                return time.monotonic() - started
            answers.append(response.status_code)
        except httpx.TransportError as error:
            answers.append(type(error).__name__)
        time.sleep(0.2)
    pytest.fail(f"a normal client was not served within {seconds} s: {answers[-5:]}")


def read_until_closed(connections: list[socket.socket], seconds: float) -> list[bytes]:
    """What each connection received until the server closed it; fails if one stays
    open past ``seconds``."""
    received = {connection: b"" for connection in connections}
    open_ = set(connections)
    deadline = time.monotonic() + seconds
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_), [], [], 0.2)
        for connection in readable:
            try:
                chunk = connection.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                received[connection] += chunk
            else:
                open_.discard(connection)
    assert not open_, f"{len(open_)} connections still open after {seconds} s"
    return [received[connection] for connection in connections]


def check_log(log: Path) -> str:
    text = log.read_text(errors="replace")
    assert len(text.encode()) < LOG_BUDGET, f"{len(text)} bytes of log:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    return text


def test_half_open_connections_from_one_address_do_not_lock_others_out(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with server(tmp_path / "data", log, files=FILES, header_timeout=str(HEADER_TIMEOUT)) as base:
        with half_open(base) as attackers:
            # The per-address cap (a quarter of the connections) holds them back:
            # the normal client is served at once, not after the header timeout.
            assert served_within(base, HEADER_TIMEOUT) < HEADER_TIMEOUT
            answers = read_until_closed(attackers, HEADER_TIMEOUT + 5)
        assert served_within(base, 2) < 2
    refused = [answer for answer in answers if answer.startswith(b"HTTP/1.1 429")]
    timed_out = [answer for answer in answers if answer.startswith(b"HTTP/1.1 408")]
    assert refused
    assert timed_out
    assert len(refused) + len(timed_out) == HALF_OPEN
    assert b"TOO_MANY_CONNECTIONS" in refused[0]
    text = check_log(log)
    assert "KEYPLANE_MAX_CONNECTIONS_PER_IP" in text
    assert "Too many open files" not in text


def test_when_every_connection_is_taken_a_new_client_waits_no_longer_than_the_header_timeout(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    with (
        server(
            tmp_path / "data",
            log,
            files=FILES,
            header_timeout=str(HEADER_TIMEOUT),
            # Below the default (128) so the attack fills it within the header timeout:
            # Linux drops a SYN past the listen backlog (21 at 256 files), which costs
            # a connecting client a one-second retry every 22 connections.
            max_connections="40",
            max_connections_per_ip="0",  # no per-address cap: the bound on all of them holds
        ) as base,
        half_open(base) as attackers,
    ):
        waited = served_within(base, HEADER_TIMEOUT + 4)
        answers = read_until_closed(attackers, HEADER_TIMEOUT + 5)
    assert waited < HEADER_TIMEOUT + 4
    full = [answer for answer in answers if answer.startswith(b"HTTP/1.1 503")]
    assert full, "the bound on connections refused none"
    assert b"retry-after: 1" in full[0]
    text = check_log(log)
    assert "KEYPLANE_MAX_CONNECTIONS (" in text
    assert "Too many open files" not in text


def test_a_burst_queued_at_once_does_not_run_the_worker_out_of_files(tmp_path: Path) -> None:
    """All the connections wait in the kernel's queue before the worker accepts one:
    asyncio then accepts a backlog of them every loop turn, and a refused one holds its
    file for three turns, so the backlog must leave room for three of those turns
    (with half the spare files as the backlog this met EMFILE one run in three)."""
    log = tmp_path / "server.log"
    with server(
        tmp_path / "data",
        log,
        files=FILES,
        header_timeout=str(HEADER_TIMEOUT),
        max_connections_per_ip="0",
    ) as base:
        burst: list[socket.socket] = []
        try:
            for _ in range(HALF_OPEN):
                connection = socket.socket()
                burst.append(connection)
                connection.setblocking(False)
                connection.bind((ATTACKER, 0))
                connection.connect_ex(("127.0.0.1", _port(base)))
            time.sleep(0.5)
            for connection in burst:
                with contextlib.suppress(OSError):
                    connection.send(PARTIAL)
            served_within(base, HEADER_TIMEOUT + 4)
        finally:
            for connection in burst:
                connection.close()
    assert "Too many open files" not in check_log(log)


def test_a_bound_as_close_to_the_file_limit_as_allowed_still_holds(tmp_path: Path) -> None:
    """KEYPLANE_MAX_CONNECTIONS at its ceiling (16 files below the limit): the small
    listen backlog derived from it keeps asyncio from accepting past the file limit."""
    log = tmp_path / "server.log"
    with (
        server(
            tmp_path / "data",
            log,
            files=FILES,
            header_timeout=str(HEADER_TIMEOUT),
            max_connections=str(FILES - 16),
            max_connections_per_ip="0",
        ) as base,
        half_open(base),
    ):
        served_within(base, HEADER_TIMEOUT + 4)
    text = check_log(log)
    assert text.count("Too many open files") <= 1


def test_repeated_event_loop_errors_are_logged_once_per_interval_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What asyncio reports for each failed accept() when the file limit is hit (CPython
    3.11 retries up to the backlog per wake-up): one line per interval, with a count."""
    from keyplane.cli.connections import new_event_loop

    loop = new_event_loop()
    try:
        with caplog.at_level("WARNING"):
            for _ in range(2000):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                    }
                )
    finally:
        loop.close()
    lines = [record for record in caplog.records if "out of system resource" in record.message]
    assert len(lines) == 1
    assert lines[0].exc_info is None
    assert "Too many open files" in lines[0].getMessage()


def test_headers_trickled_byte_by_byte_are_cut_off_at_the_header_timeout(
    tmp_path: Path,
) -> None:
    with (
        server(tmp_path / "data", tmp_path / "server.log", header_timeout="1.5") as base,
        socket.create_connection(("127.0.0.1", _port(base)), timeout=5) as connection,
    ):
        started = time.monotonic()
        answer = b""
        request = b"GET /healthz HTTP/1.1\r\nHost: keyplane\r\nX-Slow: " + b"a" * 100
        for byte in request:  # one byte every 0.1 s: never idle, never done
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([connection], [], [], 0.1)
            if readable:
                answer = connection.recv(65536)
                break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408")
    assert 1.4 < elapsed < 4


def test_a_kept_alive_connection_that_starts_a_request_and_stalls_is_cut_off(
    tmp_path: Path,
) -> None:
    """Uvicorn's keep-alive timeout stops at the first byte of the next request;
    the header deadline, started by the previous answer, does not."""
    with (
        server(tmp_path / "data", tmp_path / "server.log", header_timeout="1.5") as base,
        socket.create_connection(("127.0.0.1", _port(base)), timeout=5) as connection,
    ):
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: keyplane\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):  # the whole answer: headers, then the JSON body
            first += connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        connection.sendall(b"GET /healthz HTTP/1.1\r\n")  # and nothing more
        started = time.monotonic()
        [answer] = read_until_closed([connection], 5)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408")
    assert elapsed < 3


@pytest.mark.parametrize("path", ["/api/v1/verify", "/api/v1/projects"])
def test_a_body_slower_than_the_body_timeout_gets_408_and_the_connection_closes(
    tmp_path: Path, path: str
) -> None:
    log = tmp_path / "server.log"
    with server(tmp_path / "data", log, body_timeout="1") as base:
        with socket.create_connection(("127.0.0.1", _port(base)), timeout=10) as connection:
            connection.sendall(
                f"POST {path} HTTP/1.1\r\nHost: keyplane\r\nAuthorization: Bearer kp_x\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
                + b'{"key": '
            )
            started = time.monotonic()
            [answer] = read_until_closed([connection], 6)
            elapsed = time.monotonic() - started
        assert fresh.get(f"{base}/healthz").status_code == 200
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"REQUEST_TIMEOUT" in answer
    assert 0.9 < elapsed < 4
    check_log(log)


SEND_TIMEOUT = 2.0
NON_READERS = 40
#: Pipelined requests each non-reading client sends once: far more answer than
#: its small receive buffer and the server's write buffer hold.
PIPELINED = 60


@contextmanager
def non_readers(base: str, count: int = NON_READERS) -> Iterator[list[socket.socket]]:
    """``count`` connections from :data:`ATTACKER` that ask for /openapi.json (about
    60 KB) :data:`PIPELINED` times, with a 2 KB receive buffer, and never read."""
    request = b"GET /openapi.json HTTP/1.1\r\nHost: keyplane\r\n\r\n" * PIPELINED
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            connection = socket.socket()
            opened.append(connection)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            connection.settimeout(5)
            connection.bind((ATTACKER, 0))
            connection.connect(("127.0.0.1", _port(base)))
            with contextlib.suppress(OSError):
                connection.sendall(request)
        yield opened
    finally:
        for connection in opened:
            connection.close()


def held_by_server(base: str) -> int:
    """How many connections from :data:`ATTACKER` the server holds open (its side of
    them, from ``/proc/net/tcp``: an aborted connection's client side may stay
    ``ESTABLISHED``, its reset refused by a full receive window)."""
    local = f"0100007F:{_port(base):04X}"  # 127.0.0.1, little-endian, then the port
    remote = "0200007F:"  # 127.0.0.2
    held = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2].startswith(remote) and fields[3] == "01":
            held += 1
    return held


def released_within(base: str, seconds: float) -> float:
    """Seconds until the server holds no connection from :data:`ATTACKER`; fails past
    ``seconds``."""
    started = time.monotonic()
    while (held := held_by_server(base)) and time.monotonic() - started < seconds:
        time.sleep(0.2)
    assert not held, f"the server still holds {held} connections after {seconds} s"
    return time.monotonic() - started


def test_clients_that_never_read_their_answers_are_cut_off_at_the_send_timeout(
    tmp_path: Path,
) -> None:
    """Each non-reading client holds a connection (and its descriptor) until the send
    deadline aborts it; the pipelined requests queued behind its stalled answer, and
    the answers the application goes on to make, do not extend it."""
    log = tmp_path / "server.log"
    with (
        server(
            tmp_path / "data",
            log,
            files=FILES,
            send_timeout=str(SEND_TIMEOUT),
            max_connections_per_ip="0",  # 40 from one address: the per-address cap is not tested
        ) as base,
        non_readers(base) as attackers,
    ):
        assert held_by_server(base) == len(attackers)
        # Each client stalls on its first answer, so the deadline is the send timeout
        # plus the sweep and the app's first answers: 4-5 s on a 2-CPU machine, over
        # 6 s when it is loaded. Were the pipelined answers to extend it, it would be
        # PIPELINED x SEND_TIMEOUT (120 s), so this bound still tells the two apart.
        released = released_within(base, SEND_TIMEOUT + 10)
        assert served_within(base, 2) < 2
    assert released > SEND_TIMEOUT / 2  # they were held, then cut off
    # Not check_log: the answers the kernel took before the stall are each logged.
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert 1 <= text.count("KEYPLANE_SEND_TIMEOUT") <= 2  # once per interval, with a count


def test_a_slow_reader_that_makes_progress_is_not_cut_off(tmp_path: Path) -> None:
    """A client reading 8 KB every 0.5 s of two 60 KB answers (about 7 s in all, over
    three times the send timeout, with the server's buffers full all along) gets all."""
    with server(tmp_path / "data", tmp_path / "server.log", send_timeout=str(SEND_TIMEOUT)) as base:
        size = len(fresh.get(f"{base}/openapi.json").content)
        connection = socket.socket()
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        connection.settimeout(5)
        with connection:
            connection.connect(("127.0.0.1", _port(base)))
            connection.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: keyplane\r\n\r\n" * 2)
            received = 0
            started = time.monotonic()
            while received < 2 * size and time.monotonic() - started < 30:
                time.sleep(0.5)
                chunk = connection.recv(8192)
                assert chunk, f"cut off after {received} bytes, {time.monotonic() - started:.1f} s"
                received += len(chunk)
            elapsed = time.monotonic() - started
    assert received >= 2 * size
    assert elapsed > 1.5 * SEND_TIMEOUT  # it was slow, for longer than the send timeout
