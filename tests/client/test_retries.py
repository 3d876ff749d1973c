"""Retries: backoff with jitter, Retry-After, and only where sending twice is safe.

The server here is a real HTTP server (Uvicorn in a thread) running a small
Starlette app that fails on purpose a given number of times.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyplane.client import Client, RateLimited, RetryPolicy, ServerError
from keyplane.client._http import retry_after_seconds
from keyplane.core.keys import KeyFormat
from tests.live import serve_in_thread

KEY = KeyFormat().generate().reveal()
WHOAMI = {
    "id": "key_AAAAAAAAAAAAAAAA",
    "name": "flaky",
    "hint": "kp_...AAAA",
    "project_id": "prj_AAAAAAAAAAAAAAAA",
    "organization_id": "org_AAAAAAAAAAAAAAAA",
    "scopes": [],
    "expires_at": None,
}


class Flaky:
    """Fails the first ``failures`` requests with ``status`` (and ``headers``), then succeeds."""

    def __init__(self) -> None:
        self.failures = 0
        self.status = 503
        self.headers: dict[str, str] = {}
        self.calls: list[str] = []

    async def handle(self, request: Request) -> Response:
        self.calls.append(request.method)
        if request.url.path.endswith("/echo"):
            # What a badly behaved proxy might do: quote the request's credentials back.
            sent = request.headers["authorization"].split()[-1]
            other = KeyFormat("acme").generate().reveal()
            return JSONResponse({"detail": f"bad key {sent}, also {other}"}, 400)
        if len(self.calls) <= self.failures:
            problem = {"type": "about:blank", "status": self.status, "code": "TRY_LATER"}
            return JSONResponse(problem, self.status, self.headers)
        if request.method == "POST":
            return JSONResponse({"id": "prj_AAAAAAAAAAAAAAAA"}, 500)
        return JSONResponse(WHOAMI)


async def slow(request: Request) -> Response:
    await anyio.sleep(2)
    return JSONResponse(WHOAMI)


@pytest.fixture(scope="module")
def flaky_server() -> Iterator[tuple[str, Flaky]]:
    flaky = Flaky()
    app = Starlette(
        routes=[
            Route("/slow/api/v1/whoami", slow),
            Route("/api/v1/{path:path}", flaky.handle, methods=["GET", "POST"]),
        ]
    )
    with serve_in_thread(app) as url:
        yield url, flaky


@pytest.fixture
def flaky(flaky_server: tuple[str, Flaky]) -> Flaky:
    state = flaky_server[1]
    state.failures, state.status, state.headers, state.calls[:] = 0, 503, {}, []
    return state


def client_for(url: str, sleeps: list[float], **policy: float) -> Client:
    client = Client(KEY, base_url=url, retry=RetryPolicy(**policy))  # type: ignore[arg-type]
    client._sleep = sleeps.append
    return client


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_an_idempotent_call_is_retried_after_a_passing_failure(
    flaky_server: tuple[str, Flaky], flaky: Flaky, status: int
) -> None:
    flaky.failures, flaky.status = 2, status
    sleeps: list[float] = []
    with client_for(flaky_server[0], sleeps, max_retries=2, base=0.5, cap=8) as client:
        assert client.whoami().name == "flaky"
    assert len(flaky.calls) == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5
    assert 0 <= sleeps[1] <= 1.0


def test_retries_stop_after_max_retries(flaky_server: tuple[str, Flaky], flaky: Flaky) -> None:
    flaky.failures = 10
    sleeps: list[float] = []
    with client_for(flaky_server[0], sleeps, max_retries=3) as client, pytest.raises(ServerError):
        client.whoami()
    assert len(flaky.calls) == 4
    assert len(sleeps) == 3


def test_a_post_is_never_retried_after_the_server_saw_it(
    flaky_server: tuple[str, Flaky], flaky: Flaky
) -> None:
    flaky.failures = 1
    sleeps: list[float] = []
    with client_for(flaky_server[0], sleeps) as client, pytest.raises(ServerError):
        client.projects.create("once")
    assert flaky.calls == ["POST"]
    assert sleeps == []


def test_retry_after_seconds_is_honoured(flaky_server: tuple[str, Flaky], flaky: Flaky) -> None:
    flaky.failures, flaky.status, flaky.headers = 1, 429, {"Retry-After": "3"}
    sleeps: list[float] = []
    with client_for(flaky_server[0], sleeps) as client:
        client.whoami()
    assert sleeps == [3.0]


def test_a_retry_after_too_long_to_wait_raises_rate_limited_with_it(
    flaky_server: tuple[str, Flaky], flaky: Flaky
) -> None:
    flaky.failures, flaky.status, flaky.headers = 1, 429, {"Retry-After": "120"}
    sleeps: list[float] = []
    with client_for(flaky_server[0], sleeps) as client, pytest.raises(RateLimited) as caught:
        client.whoami()
    assert caught.value.retry_after == 120.0
    assert sleeps == []
    assert caught.value.code == "TRY_LATER"


def test_a_refused_connection_is_retried_then_reported(flaky_server: tuple[str, Flaky]) -> None:
    from keyplane.client import TransportError

    sleeps: list[float] = []
    with (
        client_for("http://127.0.0.1:9", sleeps, max_retries=2) as client,
        pytest.raises(TransportError, match=r"cannot reach Keyplane at http://127\.0\.0\.1:9"),
    ):
        client.projects.create("never sent")
    assert len(sleeps) == 2  # nothing was sent, so even a POST may go again


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retries=10, base=0.5, cap=4.0)
    assert [policy.delay(n, None, rand=lambda: 1.0) for n in range(5)] == [0.5, 1, 2, 4, 4]
    assert policy.delay(10, None) is None
    assert policy.delay(0, 2.5) == 2.5


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0", 0.0), ("-3", 0.0), ("soon", None), (None, None), ("nan", None)],
)
def test_retry_after_header_values(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(header, now=now) == 30.0


def test_a_slow_server_is_a_timeout(flaky_server: tuple[str, Flaky]) -> None:
    from keyplane.client import Timeout

    sleeps: list[float] = []
    client = Client(KEY, base_url=flaky_server[0] + "/slow", timeout=0.2, max_retries=1)
    client._sleep = sleeps.append
    with client, pytest.raises(Timeout, match="did not answer in time"):
        client.whoami()
    assert len(sleeps) == 1  # a read timeout on a GET is retried once, then reported


def test_the_async_client_retries_the_same_way(
    flaky_server: tuple[str, Flaky], flaky: Flaky
) -> None:
    from keyplane.client import AsyncClient

    flaky.failures, flaky.status, flaky.headers = 2, 503, {"Retry-After": "0"}
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> str:
        async with AsyncClient(KEY, base_url=flaky_server[0]) as client:
            client._sleep = record
            return (await client.whoami()).name

    assert anyio.run(scenario) == "flaky"
    assert sleeps == [0.0, 0.0]
    assert len(flaky.calls) == 3


def test_a_key_quoted_back_by_a_proxy_is_masked_in_the_error(
    flaky_server: tuple[str, Flaky], flaky: Flaky
) -> None:
    from keyplane.client import BadRequest
    from keyplane.client._http import Operation

    with Client(KEY, base_url=flaky_server[0]) as client, pytest.raises(BadRequest) as caught:
        client.run(Operation("GET", "/echo", lambda data: data))
    text = str(caught.value) + repr(caught.value) + str(caught.value.problem)
    assert KEY not in text
    assert f"kp_...{KEY[-4:]}" in text
    assert "acme_..." in text
