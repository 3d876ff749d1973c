"""Who decides whether a request's key is good: in-process (local) or through the server (remote).

Both answer an :class:`Outcome`, so the middleware and dependencies do not
care which one they use.

- :class:`LocalVerifier` calls :mod:`keyplane.service`'s verifier against the
  same database as the Keyplane server: no network hop, same cache and
  last-used buffer as the server (one per process).
- :class:`RemoteVerifier` asks ``POST /api/v1/verify`` through the SDK with its
  own ``keys:verify`` key and remembers good answers briefly (``cache_ttl``,
  1 s by default, so a revocation still takes effect within about a second),
  keyed by the key's SHA-256, never the key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from keyplane.core.errors import InvalidInput, KeyplaneError
from keyplane.core.grant import Decision, GrantCode
from keyplane.core.keys import DEFAULT_PREFIX, KeyFormat
from keyplane.core.network import IPAddress, parse_ip

if TYPE_CHECKING:
    from keyplane.config import Settings
    from keyplane.service.services import Services

logger = logging.getLogger("keyplane.integrations")

#: Not a grant code: the verifier itself could not answer (server down, bad verifier key).
UNAVAILABLE: Final = "UNAVAILABLE"
#: Seconds a remote verifier remembers a good answer: as long as a Keyplane
#: instance caches a key, so "revoked keys are refused within 1 s" still holds.
DEFAULT_CACHE_TTL: Final = 1.0


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """The key that authenticated a request. Holds no secret."""

    key_id: str
    name: str
    project_id: str
    organization_id: str
    scopes: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a verifier says about one request's key."""

    code: str
    identity: KeyIdentity | None = None
    missing_scopes: tuple[str, ...] = ()
    retry_after: float | None = None

    @property
    def granted(self) -> bool:
        return self.code == GrantCode.VALID and self.identity is not None


class KeyVerifier(Protocol):
    """What the middleware needs from a verifier."""

    key_format: KeyFormat

    def check(
        self, key: str, *, scopes: Iterable[str], client_ip: str | None, user_agent: str | None
    ) -> Outcome: ...

    async def check_async(
        self, key: str, *, scopes: Iterable[str], client_ip: str | None, user_agent: str | None
    ) -> Outcome: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def _ip(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        return parse_ip(text)
    except InvalidInput:
        return None


class LocalVerifier:
    """Verify in this process, on the Keyplane database (``keyplane.service``).

    Give it the :class:`~keyplane.service.services.Services` of your process, or
    use :meth:`open` to open them from the ``KEYPLANE_*`` settings (then
    :meth:`close` flushes last-used times and closes the database).
    ``organization_id`` limits the accepted keys to one organization; without it
    any organization's key in that database is accepted.
    """

    def __init__(self, services: Services, *, organization_id: str | None = None) -> None:
        self.services = services
        self.organization_id = organization_id
        self.key_format = services.settings.key_format
        self._owned = False

    @classmethod
    def open(
        cls, settings: Settings | None = None, *, organization_id: str | None = None
    ) -> LocalVerifier:
        from keyplane.config import Settings
        from keyplane.service.services import Services

        services = Services.open(settings or Settings.from_env())
        services.start()
        verifier = cls(services, organization_id=organization_id)
        verifier._owned = True
        return verifier

    def check(
        self, key: str, *, scopes: Iterable[str], client_ip: str | None, user_agent: str | None
    ) -> Outcome:
        try:
            decision = self.services.verifier.verify(
                key,
                required_scopes=tuple(scopes),
                client_ip=_ip(client_ip),
                user_agent=user_agent,
                organization_id=self.organization_id,
            )
        except Exception as error:
            return _local_outage(error)
        return _from_decision(decision)

    async def check_async(
        self, key: str, *, scopes: Iterable[str], client_ip: str | None, user_agent: str | None
    ) -> Outcome:
        try:
            decision = await self.services.verifier.verify_async(
                key,
                required_scopes=tuple(scopes),
                client_ip=_ip(client_ip),
                user_agent=user_agent,
                organization_id=self.organization_id,
            )
        except Exception as error:
            return _local_outage(error)
        return _from_decision(decision)

    def close(self) -> None:
        if self._owned:
            self.services.close()

    async def aclose(self) -> None:
        self.close()


def _local_outage(error: Exception) -> Outcome:
    """The database is unavailable: a 503 for the request (one log line, no
    traceback), as the remote mode answers when Keyplane cannot be reached.
    Any other error is a bug and propagates."""
    from keyplane.service.availability import cause_name, is_database_unavailable

    if not is_database_unavailable(error):
        raise error
    logger.warning(
        "cannot verify keys: the Keyplane database is unavailable (%s)", cause_name(error)
    )
    return Outcome(UNAVAILABLE)


def _from_decision(decision: Decision) -> Outcome:
    key = decision.key
    identity = None
    if key is not None and decision.code in (GrantCode.VALID, GrantCode.INSUFFICIENT_SCOPE):
        identity = KeyIdentity(
            key_id=key.key_id,
            name=key.name,
            project_id=key.project_id,
            organization_id=key.organization_id,
            scopes=tuple(key.scopes),
            metadata=dict(key.metadata),
            expires_at=key.expires_at,
        )
    # Over a limit: how long until the window or the quota period ends (None: never).
    allowance = decision.quota if decision.code is GrantCode.USAGE_EXCEEDED else decision.rate_limit
    retry_after = None
    if allowance is not None and allowance.reset_at is not None:
        retry_after = max(0.0, allowance.reset_at - time.time())
    return Outcome(str(decision.code), identity, tuple(decision.missing_scopes), retry_after)


# (SHA-256 of the key, the scopes asked, the client IP): never the key itself.
_CacheKey = tuple[str, tuple[str, ...], str | None]


class RemoteVerifier:
    """Verify through a Keyplane server's ``POST /api/v1/verify``.

    ``api_key`` (a key with ``keys:verify``) and ``base_url`` are found like the
    SDK finds them (``KEYPLANE_API_KEY``, ``KEYPLANE_URL``, ...). Good answers
    are kept ``cache_ttl`` seconds in a bounded LRU map keyed by the SHA-256 of
    the key (with the scopes and client IP asked), never by the key.
    A key that fails the offline checksum is refused without a request.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = 10_000,
        timeout: float = 5.0,
        max_retries: int = 1,
        key_prefix: str | None = None,
    ) -> None:
        from keyplane.client import AsyncClient, Client

        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.key_format = KeyFormat(
            key_prefix or os.environ.get("KEYPLANE_KEY_PREFIX", "").strip() or DEFAULT_PREFIX
        )
        self.client = Client(api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self.async_client = AsyncClient(
            api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self._cache: OrderedDict[_CacheKey, tuple[float, Outcome]]
        self._cache = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteVerifier(base_url={self.client.base_url!r}, key={self.client.key_hint!r})"

    def check(
        self, key: str, *, scopes: Iterable[str], client_ip: str | None, user_agent: str | None
    ) -> Outcome:
        required = tuple(sorted(set(scopes)))
        cache_key = self._before_asking(key, required, client_ip)
        if isinstance(cache_key, Outcome):
            return cache_key
        try:
            answer = self.client.verify(
                key, scopes=required, client_ip=client_ip, user_agent=user_agent
            )
        except KeyplaneError as error:
            return self._unavailable(error)
        return self._remember(cache_key, answer)

    async def check_async(
        self, key: str, *, scopes: Iterable[str], client_ip: str | None, user_agent: str | None
    ) -> Outcome:
        required = tuple(sorted(set(scopes)))
        cache_key = self._before_asking(key, required, client_ip)
        if isinstance(cache_key, Outcome):
            return cache_key
        try:
            answer = await self.async_client.verify(
                key, scopes=required, client_ip=client_ip, user_agent=user_agent
            )
        except KeyplaneError as error:
            return self._unavailable(error)
        return self._remember(cache_key, answer)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        self.client.close()
        await self.async_client.aclose()

    # -- the cache of good answers ----------------------------------------------

    def _before_asking(
        self, key: str, required: tuple[str, ...], client_ip: str | None
    ) -> Outcome | _CacheKey:
        """The answer known without asking the server (a bad checksum, a cached answer),
        or else the cache key to remember the server's answer under."""
        if not self.key_format.is_key(key):
            return Outcome(GrantCode.NOT_FOUND)
        cache_key = (hashlib.sha256(key.encode()).hexdigest(), required, client_ip)
        cached = self._cached(cache_key)
        return cache_key if cached is None else cached

    def _cached(self, cache_key: _CacheKey) -> Outcome | None:
        with self._lock:
            entry = self._cache.get(cache_key)
            if entry is None:
                return None
            if time.monotonic() >= entry[0]:
                del self._cache[cache_key]
                return None
            self._cache.move_to_end(cache_key)
            return entry[1]

    def _remember(self, cache_key: _CacheKey, answer: Any) -> Outcome:
        identity = None
        if answer.key_id and answer.code in (GrantCode.VALID, GrantCode.INSUFFICIENT_SCOPE):
            identity = KeyIdentity(
                key_id=answer.key_id,
                name=answer.name or "",
                project_id=answer.project_id or "",
                organization_id=answer.organization_id or "",
                scopes=tuple(answer.scopes or ()),
                metadata=dict(answer.metadata or {}),
                expires_at=answer.expires_at,
            )
        outcome = Outcome(
            answer.code, identity, tuple(answer.missing_scopes or ()), answer.retry_after
        )
        if outcome.granted and self.cache_ttl > 0 and self.cache_size > 0:
            with self._lock:
                self._cache[cache_key] = (time.monotonic() + self.cache_ttl, outcome)
                self._cache.move_to_end(cache_key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return outcome

    @staticmethod
    def _unavailable(error: KeyplaneError) -> Outcome:
        # The caller's key is not at fault: say 503, and tell the operator why.
        logger.error("cannot verify keys through Keyplane: %s", error)
        return Outcome(UNAVAILABLE)


def verifier_from_env(environ: Mapping[str, str] | None = None) -> KeyVerifier:
    """``KEYPLANE_VERIFY_MODE=local`` opens the database from the ``KEYPLANE_*`` settings;
    ``remote`` (the default) uses ``KEYPLANE_URL`` and ``KEYPLANE_API_KEY``."""
    env = os.environ if environ is None else environ
    mode = env.get("KEYPLANE_VERIFY_MODE", "remote").strip().lower() or "remote"
    if mode == "local":
        from keyplane.config import Settings

        return LocalVerifier.open(Settings.from_env(env))
    if mode == "remote":
        return RemoteVerifier()
    raise KeyplaneError(f"KEYPLANE_VERIFY_MODE must be 'local' or 'remote', got {mode!r}")
