"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx

from keyplane.client import _http, operations
from keyplane.client._http import KeyAuth, Operation, RetryPolicy
from keyplane.client.errors import APIError
from keyplane.client.models import (
    AuditEvent,
    CreatedKey,
    Key,
    Page,
    Project,
    Quota,
    RateLimit,
    Usage,
    VerifyResult,
    WhoAmI,
)
from keyplane.client.operations import NOT_GIVEN, _NotGiven
from keyplane.client.resolution import ResolvedKey, resolve_key, resolve_url
from keyplane.core.keys import SecretKey

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


class Client:
    """The Keyplane management API, synchronously.

    ``Client()`` finds its key and server on its own (see
    :mod:`keyplane.client.resolution`); pass ``api_key=`` and ``base_url=`` to
    choose. Use it as a context manager, or call :meth:`close`.

    >>> import keyplane
    >>> with keyplane.Client() as client:         # doctest: +SKIP
    ...     print(client.whoami())
    """

    def __init__(
        self,
        api_key: str | SecretKey | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.base_url = resolve_url(base_url)
        self._key: ResolvedKey = resolve_key(api_key, self.base_url)
        self.retry = retry or RetryPolicy(max_retries=max_retries)
        self._sleep: Callable[[float], None] = time.sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=KeyAuth(self._key),
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": user_agent or _http.USER_AGENT},
            follow_redirects=False,
        )
        self.projects = Projects(self)
        self.keys = Keys(self)
        self.audit = Audit(self)

    @property
    def key_hint(self) -> str:
        """The hint of the key this client sends (``kp_...abcd``)."""
        return self._key.secret.hint

    @property
    def key_source(self) -> str:
        """Where the key came from, in words (``the environment variable KEYPLANE_API_KEY``)."""
        return self._key.source

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, key={self.key_hint!r})"

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------

    def whoami(self) -> WhoAmI:
        """The key this client uses: name, id, project, organization, scopes."""
        return self.run(operations.whoami())

    def verify(
        self,
        key: str | SecretKey,
        *,
        scopes: Iterable[str] = (),
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> VerifyResult:
        """Check a key someone handed you (this client's key needs ``keys:verify``)."""
        return self.run(
            operations.verify(key, scopes=scopes, client_ip=client_ip, user_agent=user_agent)
        )

    def run(self, operation: Operation[T]) -> T:
        """Send one operation, retrying what is safe to retry; its parsed answer or an error."""
        attempt = 0
        while True:
            request = _http.build_request(self._http, operation)
            try:
                response = self._http.send(request)
            except httpx.TransportError as error:
                delay = _http.delay_after_transport_error(self.retry, operation, attempt, error)
                if delay is None:
                    raise _http.transport_error(error, self.base_url) from None
                self._wait(operation, attempt, delay, type(error).__name__)
                attempt += 1
                continue
            try:
                return _http.read(response, operation, self._key)
            except APIError:
                delay = _http.delay_after_error_answer(self.retry, operation, attempt, response)
                if delay is None:
                    raise
                self._wait(operation, attempt, delay, str(response.status_code))
                attempt += 1
            finally:
                response.close()

    def _wait(self, operation: Operation[Any], attempt: int, delay: float, why: str) -> None:
        _http.log_retry(self.retry, operation, attempt, delay, why)
        self._sleep(delay)


def paginate(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a list, following ``next_cursor`` page after page."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class Projects:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Project]:
        """One page of projects, newest first."""
        return self._client.run(operations.list_projects(limit=limit, cursor=cursor))

    def iter(self, *, page_size: int = 100) -> Iterator[Project]:
        """Every project, fetching pages as needed."""
        return paginate(lambda cursor: self.list(limit=page_size, cursor=cursor))

    def get(self, project_id: str) -> Project:
        return self._client.run(operations.get_project(project_id))

    def create(self, name: str) -> Project:
        return self._client.run(operations.create_project(name))


class Keys:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self,
        project_id: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Key]:
        """One page of a project's keys, newest first; ``status`` filters (active, revoked...)."""
        return self._client.run(
            operations.list_keys(project_id, status=status, limit=limit, cursor=cursor)
        )

    def iter(
        self, project_id: str, *, status: str | None = None, page_size: int = 100
    ) -> Iterator[Key]:
        """Every key of a project, fetching pages as needed."""
        return paginate(
            lambda cursor: self.list(project_id, status=status, limit=page_size, cursor=cursor)
        )

    def get(self, key_id: str) -> Key:
        return self._client.run(operations.get_key(key_id))

    def create(
        self,
        project_id: str,
        *,
        name: str,
        scopes: Iterable[str] = (),
        expires_at: datetime | None = None,
        expires_in: str | timedelta | None = None,
        ip_allowlist: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        enabled: bool = True,
        rate_limit: RateLimit | None = None,
        quota: Quota | None = None,
    ) -> CreatedKey:
        """Create a key. Its value is in ``.key`` (``.key.reveal()``), this once only.

        ``rate_limit=RateLimit(100, 60)`` allows 100 requests a minute;
        ``quota=Quota(10_000, "day")`` allows 10,000 uses a UTC day.
        """
        return self._client.run(
            operations.create_key(
                project_id,
                name=name,
                scopes=scopes,
                expires_at=expires_at,
                expires_in=expires_in,
                ip_allowlist=ip_allowlist,
                metadata=metadata,
                enabled=enabled,
                rate_limit=rate_limit,
                quota=quota,
            )
        )

    def update(
        self,
        key_id: str,
        *,
        name: str | _NotGiven = NOT_GIVEN,
        scopes: Iterable[str] | _NotGiven = NOT_GIVEN,
        expires_at: datetime | _NotGiven | None = NOT_GIVEN,
        metadata: Mapping[str, Any] | _NotGiven = NOT_GIVEN,
        enabled: bool | _NotGiven = NOT_GIVEN,
        ip_allowlist: Iterable[str] | _NotGiven = NOT_GIVEN,
        rate_limit: RateLimit | _NotGiven | None = NOT_GIVEN,
        quota: Quota | _NotGiven | None = NOT_GIVEN,
    ) -> Key:
        """Change only the fields given; ``expires_at``, ``rate_limit`` or ``quota`` set to
        None removes the expiry, the rate limit or the quota."""
        return self._client.run(
            operations.update_key(
                key_id,
                name=name,
                scopes=scopes,
                expires_at=expires_at,
                metadata=metadata,
                enabled=enabled,
                ip_allowlist=ip_allowlist,
                rate_limit=rate_limit,
                quota=quota,
            )
        )

    def usage(
        self,
        key_id: str,
        *,
        interval: Literal["hour", "day"] = "day",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Usage:
        """A key's verifications per UTC hour or day, by outcome, oldest first.

        ``since`` defaults to 30 days (``day``) or 48 hours (``hour``) before ``until``
        (default now); counts lag by about a second.
        """
        return self._client.run(
            operations.key_usage(key_id, interval=interval, since=since, until=until)
        )

    def revoke(self, key_id: str) -> Key:
        """Revoke for good (repeating it is harmless)."""
        return self._client.run(operations.revoke_key(key_id))

    def roll(self, key_id: str, *, grace_period: timedelta | float | None = None) -> CreatedKey:
        """A new key with the same settings; the old one works for ``grace_period`` (24 h)."""
        return self._client.run(operations.roll_key(key_id, grace_period=grace_period))


class Audit:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self,
        *,
        action: str | None = None,
        key_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[AuditEvent]:
        """One page of the organization's audit events, newest first."""
        return self._client.run(
            operations.list_audit_events(
                action=action,
                key_id=key_id,
                actor=actor,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )
        )

    def iter(
        self,
        *,
        action: str | None = None,
        key_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[AuditEvent]:
        """Every matching audit event, fetching pages as needed."""
        return paginate(
            lambda cursor: self.list(
                action=action,
                key_id=key_id,
                actor=actor,
                since=since,
                until=until,
                limit=page_size,
                cursor=cursor,
            )
        )
