"""Verification: hash, look up (cache, then storage), decide, note the use.

A cached key costs a SHA-256, a dict look-up, a few attribute checks and a
dict assignment; a miss is one indexed query by hash. The offline format
check (prefix, alphabet, checksum) runs on a cache miss only, so a garbage
key never reaches storage. The use is only noted in the usage buffer: verification
never writes to the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

import anyio.to_thread
from sqlalchemy import bindparam, select

from keyplane.core.errors import MalformedKey
from keyplane.core.grant import Decision, GrantCode, KeyState, decide, is_plainly_valid
from keyplane.core.keys import KeyFormat
from keyplane.core.network import IPAddress, parse_allowlist
from keyplane.service.keys.cache import KeyCache
from keyplane.service.limits.key_limits import Limiter
from keyplane.service.limits.usage import UsageBuffer
from keyplane.service.validation import renderable
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey

_NOT_FOUND = Decision(GrantCode.NOT_FOUND)
# Bound once: looking a member up on an Enum class costs ~0.1 µs on Python 3.11.
_VALID = GrantCode.VALID
_INSUFFICIENT_SCOPE = GrantCode.INSUFFICIENT_SCOPE

_STATE_COLUMNS = (
    ApiKey.id,
    ApiKey.name,
    ApiKey.hint,
    ApiKey.project_id,
    ApiKey.organization_id,
    ApiKey.scopes,
    ApiKey.enabled,
    ApiKey.revoked_at,
    ApiKey.expires_at,
    ApiKey.ip_allowlist,
    ApiKey.meta,
    ApiKey.rate_limit,
    ApiKey.rate_limit_window,
    ApiKey.quota_limit,
    ApiKey.quota_refill,
    ApiKey.quota_used,
    ApiKey.quota_period,
    ApiKey.canary,
)

#: Built once: rebuilding the select and running it through the ORM cost about
#: half of a cache miss on SQLite (bench/verify.py, docs/performance.md).
_LOAD_STATE = select(*_STATE_COLUMNS).where(ApiKey.key_hash == bindparam("key_hash"))


class Verifier:
    def __init__(
        self,
        database: Database,
        *,
        key_format: KeyFormat,
        cache: KeyCache,
        usage: UsageBuffer,
        clock: Callable[[], datetime],
        limiter: Limiter | None = None,
    ) -> None:
        self._database = database
        self._format = key_format
        self._cache = cache
        self._usage = usage
        self._clock = clock
        self._limiter = limiter
        self._length = key_format.length
        self._head = key_format.prefix + "_"
        #: key id -> the VALID decision for its current cached state, reused on hits.
        self._valid: dict[str, Decision] = {}
        epoch = datetime.fromtimestamp(0, UTC)
        self._this_hour = (epoch, epoch, 0)

    def verify(
        self,
        raw_key: str,
        *,
        required_scopes: Iterable[str] = (),
        client_ip: IPAddress | None = None,
        user_agent: str | None = None,
        organization_id: str | None = None,
    ) -> Decision:
        """Decide whether ``raw_key`` grants a request; blocks on storage on a cache miss."""
        found = self._cached(raw_key)
        if found is None:
            return _NOT_FOUND
        key_hash, state = found
        state = state or self.load(key_hash)
        return self._decide(state, required_scopes, client_ip, user_agent, organization_id)

    async def verify_async(
        self,
        raw_key: str,
        *,
        required_scopes: Iterable[str] = (),
        client_ip: IPAddress | None = None,
        user_agent: str | None = None,
        organization_id: str | None = None,
    ) -> Decision:
        """:meth:`verify` for the event loop: a hit stays on the loop, a miss goes to a thread."""
        found = self._cached(raw_key)
        if found is None:
            return _NOT_FOUND
        key_hash, state = found
        state = state or await anyio.to_thread.run_sync(self.load, key_hash)
        if (
            state is not None
            and self._limiter is not None
            and self._limiter.shared
            and (state.rate_limit is not None or state.quota_limit is not None)
        ):
            # Shared limits ask Redis: off the event loop.
            return await anyio.to_thread.run_sync(
                self._decide, state, required_scopes, client_ip, user_agent, organization_id
            )
        return self._decide(state, required_scopes, client_ip, user_agent, organization_id)

    def load(self, key_hash: str) -> KeyState | None:
        """Read one key's state by hash (one indexed query) and cache it."""
        generation = self._cache.generation()
        row = self._database.lookup(_LOAD_STATE, {"key_hash": key_hash})
        if row is None:
            return None
        state = _to_state(tuple(row))
        if not state.canary:
            # A canary is never cached: it costs the look-up an unknown key costs, so
            # timing does not tell the two apart.
            self._cache.put(key_hash, state, generation)
        return state

    def _cached(self, raw_key: str) -> tuple[str, KeyState | None] | None:
        """None if ``raw_key`` is no key (refused without storage); else its hash and
        its cached state, None on a miss (the caller loads it)."""
        key_hash = self._hash(raw_key)
        if key_hash is None:
            return None
        state = self._cache.get(key_hash)
        if state is None and not self._well_formed(raw_key):
            return None
        return key_hash, state

    def _hash(self, raw_key: str) -> str | None:
        """The look-up hash, after the checks that cost nothing (type, length, prefix).

        The checksum (a third of a hit's cost) is checked only on a cache miss: a
        string whose hash is in the cache is a stored key, so it is well-formed.
        """
        if (
            not isinstance(raw_key, str)
            or len(raw_key) != self._length
            or not raw_key.startswith(self._head)
        ):
            return None
        try:
            return sha256(raw_key.encode()).hexdigest()
        except UnicodeEncodeError:  # a lone surrogate, from JSON
            return None

    def _well_formed(self, raw_key: str) -> bool:
        try:
            self._format.parse(raw_key)
        except MalformedKey:
            return False
        return True

    def _decide(
        self,
        state: KeyState | None,
        required_scopes: Iterable[str],
        client_ip: IPAddress | None,
        user_agent: str | None,
        organization_id: str | None,
    ) -> Decision:
        if state is None:
            return _NOT_FOUND
        if state.canary:
            # Refused exactly like an unknown key (grant.decide says so too); the use
            # is the alarm, raised from the usage buffer's flush.
            self._usage.note_canary(state.key_id, self._clock(), client_ip, user_agent)
            return _NOT_FOUND
        if organization_id is not None and state.organization_id != organization_id:
            return _NOT_FOUND  # another organization's key does not exist for this caller
        now = self._clock()
        if is_plainly_valid(state, now, required_scopes):
            # The common case: grant.decide's VALID, reused rather than built again.
            decision = self._valid.get(state.key_id)
            if decision is None or decision.key is not state:
                decision = self._remember_valid(state)
        else:
            decision = decide(state, now=now, client_ip=client_ip, required_scopes=required_scopes)
            if (
                decision.code is _VALID
                and self._limiter is not None
                and (state.rate_limit is not None or state.quota_limit is not None)
            ):
                code, rate, quota = self._limiter.check(state, now)
                decision = Decision(code, state, rate_limit=rate, quota=quota)
        code = decision.code
        self._usage.note(
            state.key_id,
            code,
            self._hour(now),
            now if code is _VALID or code is _INSUFFICIENT_SCOPE else None,
            client_ip,
            user_agent,
        )
        return decision

    def _remember_valid(self, state: KeyState) -> Decision:
        if len(self._valid) >= max(self._cache.max_size, 1) * 2:
            self._valid.clear()
        decision = self._valid[state.key_id] = Decision(_VALID, state)
        return decision

    def _hour(self, now: datetime) -> int:
        """Hours since the epoch, for the usage counters (recomputed once an hour)."""
        start, end, hour = self._this_hour
        if start <= now < end:
            return hour
        hour = int(now.timestamp()) // 3600
        start = datetime.fromtimestamp(hour * 3600, UTC)
        self._this_hour = (start, start + timedelta(hours=1), hour)
        return hour


def _to_state(row: tuple[Any, ...]) -> KeyState:
    (
        key_id,
        name,
        hint,
        project_id,
        organization_id,
        scopes,
        enabled,
        revoked_at,
        expires_at,
        allowlist,
        meta,
        rate_limit,
        rate_limit_window,
        quota_limit,
        quota_refill,
        quota_used,
        quota_period,
        canary,
    ) = row
    return KeyState(
        key_id=key_id,
        name=name,
        hint=hint,
        project_id=project_id,
        organization_id=organization_id,
        scopes=tuple(scopes),
        enabled=enabled,
        revoked_at=revoked_at,
        expires_at=expires_at,
        ip_allowlist=parse_allowlist(allowlist),
        metadata=renderable(meta, "metadata"),
        rate_limit=rate_limit,
        rate_limit_window=rate_limit_window or 60,
        quota_limit=quota_limit,
        quota_refill=quota_refill,
        quota_used=quota_used or 0,
        quota_period=quota_period or "",
        canary=bool(canary),
    )
