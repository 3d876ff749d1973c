"""The asynchronous client: the same calls as :class:`~keyplane.client.Client`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from keyplane.client import _http, operations
from keyplane.client._http import KeyAuth, Operation, RetryPolicy
from keyplane.client._resources import (
    Audit,
    ClientBase,
    Events,
    Keys,
    Policies,
    Projects,
    Webhooks,
    call,
)
from keyplane.client.errors import APIError
from keyplane.client.models import Page
from keyplane.client.operations import Pages
from keyplane.core.keys import SecretKey

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


class AsyncClient(ClientBase):
    """The Keyplane management API, for asyncio (and anyio) programs.

    ``Client()`` finds its key and server on its own (see
    :mod:`keyplane.client.resolution`); pass ``api_key=`` and ``base_url=`` to
    choose. Use it as a context manager, or call :meth:`close`.

    >>> import keyplane
    >>> async with keyplane.AsyncClient() as client:    # doctest: +SKIP
    ...     print(await client.whoami())
    """

    def __init__(
        self,
        api_key: str | SecretKey | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(api_key, base_url, retry or RetryPolicy(max_retries=max_retries))
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=KeyAuth(self._key),
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": user_agent or _http.USER_AGENT},
            follow_redirects=False,
        )
        self.projects: Projects[AsyncClient] = Projects(self)
        self.keys: Keys[AsyncClient] = Keys(self)
        self.audit: Audit[AsyncClient] = Audit(self)
        self.events: Events[AsyncClient] = Events(self)
        self.policies: Policies[AsyncClient] = Policies(self)
        self.webhooks: Webhooks[AsyncClient] = Webhooks(self)

    # -- lifecycle -------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- calls: each one is an operation of ``operations.py`` (see ``_resources.py``) --

    whoami = call(operations.whoami)
    verify = call(operations.verify)

    async def run(self, operation: Operation[T]) -> T:
        """Send one operation, retrying what is safe to retry; its parsed answer or an error."""
        attempt = 0
        while True:
            request = _http.build_request(self._http, operation)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                delay = _http.delay_after_transport_error(self.retry, operation, attempt, error)
                if delay is None:
                    raise _http.transport_error(error, self.base_url) from None
                await self._wait(operation, attempt, delay, type(error).__name__)
                attempt += 1
                continue
            try:
                return _http.read(response, operation, self._key)
            except APIError:
                delay = _http.delay_after_error_answer(self.retry, operation, attempt, response)
                if delay is None:
                    raise
                await self._wait(operation, attempt, delay, str(response.status_code))
                attempt += 1
            finally:
                await response.aclose()

    async def _wait(self, operation: Operation[Any], attempt: int, delay: float, why: str) -> None:
        _http.log_retry(self.retry, operation, attempt, delay, why)
        await self._sleep(delay)

    def _iterate(self, pages: Pages[T]) -> AsyncIterator[T]:
        return paginate(lambda cursor: self.run(pages.fetch(cursor)))


async def paginate(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """Every item of a list, following ``next_cursor`` page after page."""
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
