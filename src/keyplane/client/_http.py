"""What the sync and async clients share: requests as values, answers to models or errors,
the retry policy, and the auth flow that adds the key to each request.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar
from urllib.parse import quote

import httpx

from keyplane.client import errors
from keyplane.client._version import __version__
from keyplane.client.resolution import ResolvedKey
from keyplane.core.errors import MalformedKey
from keyplane.core.keys import KeyFormat
from keyplane.core.paths import API_PREFIX

T = TypeVar("T")
logger = logging.getLogger("keyplane.client")

USER_AGENT: Final = f"keyplane-python/{__version__} httpx/{httpx.__version__}"
#: Methods that may be sent twice with the same effect as once.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_KEY_LIKE: Final = re.compile(r"[a-z][a-z0-9]{0,15}_[0-9A-Za-z]{36}")
_KEY_SEARCH: Final = re.compile(
    r"(?<![A-Za-z0-9_])[a-z][a-z0-9]{0,15}_[0-9A-Za-z]{36}(?![A-Za-z0-9])"
)


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """One API call as a value: what to send, and how to read a good answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    #: Safe to send again after a failure the request may or may not have reached.
    idempotent: bool | None = None

    @property
    def retryable(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method in IDEMPOTENT_METHODS


def segment(value: str, what: str) -> str:
    """One URL path segment. A key is refused here, before it could reach a URL."""
    if looks_like_key(value):
        raise ValueError(
            f"that is an API key, not a {what} id: pass the id (e.g. key_...), never a key in a URL"
        )
    return quote(value, safe="")


def looks_like_key(value: str) -> bool:
    """True if ``value`` is a checksum-valid key of any prefix (prefix_ + 30 + 6 checksum)."""
    if not isinstance(value, str) or not _KEY_LIKE.fullmatch(value):
        return False
    try:
        KeyFormat(value.partition("_")[0]).parse(value)
    except (MalformedKey, ValueError, Exception):  # a prefix KeyFormat refuses is not a key
        return False
    return True


def query(**params: Any) -> dict[str, Any]:
    """Query parameters without the ones left out (None)."""
    result: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, str) and looks_like_key(value):
            raise ValueError(f"{name} is an API key: a key never goes into a URL")
        result[name] = value.isoformat() if isinstance(value, datetime) else value
    return result


class KeyAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <key>`` to each request; holds the key as a SecretKey."""

    def __init__(self, resolved: ResolvedKey) -> None:
        self._resolved = resolved

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._resolved.secret.reveal()}"
        yield request

    def __repr__(self) -> str:
        return f"KeyAuth({self._resolved.secret.hint!r})"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it.

    Attempt ``n`` (0-based) waits a random time up to ``min(cap, base * 2**n)``.
    A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the
    error is raised at once, with ``retry_after`` set.
    """

    max_retries: int = 2
    base: float = 0.5
    cap: float = 8.0
    max_retry_after: float = 60.0

    def delay(
        self, attempt: int, retry_after: float | None, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before retry ``attempt``, or None to stop retrying."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return float(rand() * min(self.cap, self.base * 2.0**attempt))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, 86_400.0))


def read(response: httpx.Response, operation: Operation[T], key: ResolvedKey) -> T:
    """The parsed answer of a successful call, or the typed error for a failed one."""
    if response.is_success:
        try:
            data = response.json() if response.content else None
        except ValueError:
            raise errors.ServerError(
                f"the server answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from None
        return operation.parse(data)
    raise error_for(response, operation, key)


_ERROR_CLASSES: Final[dict[int, type[errors.APIError]]] = {
    400: errors.BadRequest,
    401: errors.InvalidAPIKey,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    422: errors.BadRequest,
}


def redact(text: str, key: ResolvedKey) -> str:
    """``text`` with the client's own key, and anything that is a checksum-valid key of
    any prefix, replaced by a hint."""
    text = text.replace(key.secret.reveal(), key.secret.hint)

    def hint(match: re.Match[str]) -> str:
        value = match.group()
        return f"{value.partition('_')[0]}_...{value[-4:]}" if looks_like_key(value) else value

    return _KEY_SEARCH.sub(hint, text)


def error_for(
    response: httpx.Response, operation: Operation[Any], key: ResolvedKey
) -> errors.APIError:
    status = response.status_code
    problem: dict[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict):
            problem = body
    except (ValueError, json.JSONDecodeError):
        pass
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
    if detail is not None:
        # Keyplane never quotes a key back, but a proxy in front of it might.
        detail = redact(detail, key)
        problem = {**problem, "detail": detail}
    reason = detail or response.reason_phrase or "error"
    where = f"{operation.method} {API_PREFIX}{operation.path}"
    message = f"{where} answered {status}: {reason}" + (f" ({code})" if code else "")
    if status == 401:
        message += (
            f" The key sent ({key.secret.hint}, from {key.source}) was refused."
            if code != "MISSING_KEY"
            else ""
        )
    fields: dict[str, Any] = {"status": status, "code": code, "detail": detail, "problem": problem}
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        return errors.RateLimited(message, retry_after=retry_after, **fields)
    if status >= 500:
        return errors.ServerError(message, **fields)
    return _ERROR_CLASSES.get(status, errors.APIError)(message, **fields)


def transport_error(error: httpx.TransportError, base_url: str) -> errors.TransportError:
    if isinstance(error, httpx.TimeoutException):
        return errors.Timeout(
            f"Keyplane at {base_url} did not answer in time ({type(error).__name__})"
        )
    reason = str(error) or type(error).__name__
    return errors.TransportError(
        f"cannot reach Keyplane at {base_url}: {reason}. "
        "Check KEYPLANE_URL and that the server is running."
    )


def may_retry(operation: Operation[Any], error: httpx.TransportError) -> bool:
    """A connection that never opened sent nothing: safe to retry any call. Anything later
    (a read timeout, a reset) may have reached the server: only idempotent calls retry."""
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return operation.retryable


def delay_after_transport_error(
    policy: RetryPolicy, operation: Operation[Any], attempt: int, error: httpx.TransportError
) -> float | None:
    """Seconds to wait before retry ``attempt`` after ``error``, or None to raise it."""
    return policy.delay(attempt, None) if may_retry(operation, error) else None


def delay_after_error_answer(
    policy: RetryPolicy, operation: Operation[Any], attempt: int, response: httpx.Response
) -> float | None:
    """Seconds to wait before retry ``attempt`` after an error answer, or None to raise it."""
    if response.status_code not in RETRY_STATUSES or not operation.retryable:
        return None
    # Retry-After counts on 503 as on 429 (RFC 9110, section 10.2.3).
    return policy.delay(attempt, retry_after_seconds(response.headers.get("retry-after")))


def log_retry(
    policy: RetryPolicy, operation: Operation[Any], attempt: int, delay: float, why: str
) -> None:
    logger.info(
        "retrying %s %s in %.2fs after %s (retry %d of %d)",
        operation.method,
        API_PREFIX + operation.path,
        delay,
        why,
        attempt + 1,
        policy.max_retries,
    )


def build_request(
    http: httpx.Client | httpx.AsyncClient, operation: Operation[Any]
) -> httpx.Request:
    return http.build_request(
        operation.method,
        API_PREFIX + operation.path,
        params=operation.params or None,
        json=operation.json,
    )
