"""Cross-process cache invalidation: every process forgets a changed key within 1 s.

Each change to a key (revoke, disable, enable, update, roll) is written, in
the same transaction as the change, as a row of ``key_changes`` and, on
PostgreSQL, as a ``NOTIFY`` (delivered at commit, never for a rolled-back
change). After the commit the changing process drops the key from its own
cache and, with ``KEYPLANE_REDIS_URL``, publishes the hash on Redis.

Every process runs, in daemon threads:

* a **listener**: Redis pub/sub when Redis is configured, else ``LISTEN`` on
  a dedicated PostgreSQL connection (autocommit). It drops a key within
  milliseconds of the commit, and reconnects with backoff when the connection
  drops (then polls once, to catch what it missed meanwhile);
* a **poller**, the safety net, and the only channel on SQLite: every
  ``poll_interval`` (0.5 s) one indexed ``SELECT ... WHERE pk > :floor`` on
  ``key_changes``. After each successful poll it vouches for the cache until
  ``poll started + sync_bound`` (1 s); if polls fail for longer, the cache
  stops answering (every look-up goes to storage) until one succeeds. So a
  change is enforced everywhere within 1 s even if a notification is lost,
  and the cache's TTL can be long.

PostgreSQL hands out ``pk`` values at insert, not at commit, so a change can
commit after a higher ``pk`` was already seen. The poller therefore re-reads
the last :data:`REORDER_WINDOW` ids and applies those it has not seen yet.
Rows older than :data:`RETENTION` are pruned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import bindparam, delete, func, insert, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from keyplane.logs import Throttled
from keyplane.service.availability import cause_name
from keyplane.service.keys.cache import KeyCache
from keyplane.storage.database import Database, after_commit
from keyplane.storage.errors import StorageUnavailable
from keyplane.storage.models import KeyChange
from keyplane.storage.redis import redis_client

logger = logging.getLogger("keyplane.invalidation")

CHANNEL: Final = "keyplane_key_changes"
REDIS_CHANNEL: Final = "keyplane:key-changes"
REORDER_WINDOW: Final = 256
RETENTION: Final = timedelta(hours=1)
PRUNE_EVERY: Final = 300.0
MAX_BACKOFF: Final = 5.0

_INSERT_CHANGE = insert(KeyChange).values(
    key_hash=bindparam("key_hash"), changed_at=bindparam("changed_at")
)
_NOTIFY = text("SELECT pg_notify(:channel, :key_hash)")
_CHANGES_SINCE = (
    select(KeyChange.pk, KeyChange.key_hash)
    .where(KeyChange.pk > bindparam("floor"))
    .order_by(KeyChange.pk)
)
_LAST_CHANGE = select(func.max(KeyChange.pk))


class ChangeFeed:
    """Publishes this process's key changes and applies every process's to its cache."""

    def __init__(
        self,
        database: Database,
        cache: KeyCache,
        *,
        clock: Callable[[], datetime],
        redis_url: str | None = None,
        poll_interval: float = 0.5,
        sync_bound: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._cache = cache
        self._clock = clock
        self._redis_url = redis_url
        self.poll_interval = poll_interval
        self.sync_bound = sync_bound
        self._monotonic = monotonic
        self._redis: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._poll_lock = threading.Lock()
        self._high = 0
        self._seen: set[int] = set()
        self._last_prune = 0.0
        self._warnings = Throttled(logger)
        #: How often the listener has (re)connected and how many notices it applied.
        self.listener_connects = 0
        self.notices = 0
        self.listener_pid: int | None = None
        #: The name the Redis subscriber's connection carries (``CLIENT LIST``).
        self.client_name = f"keyplane-listener-{os.getpid()}-{id(self):x}"
        self._subscriber: Any = None
        self._listener_connection: Any = None

    # -- the writing side ----------------------------------------------------

    def record(self, session: Session, key_hash: str) -> None:
        """Note a change to ``key_hash`` inside the transaction that makes it.

        The row (and PostgreSQL's NOTIFY) commit with the change; once the commit
        succeeds, :meth:`committed` drops the key here and tells the other
        processes. Nothing is told if the transaction rolls back.
        """
        connection = session.connection()
        connection.execute(_INSERT_CHANGE, {"key_hash": key_hash, "changed_at": self._clock()})
        if not self._database.is_sqlite:
            connection.execute(_NOTIFY, {"channel": CHANNEL, "key_hash": key_hash})
        after_commit(session, lambda: self.committed(key_hash))

    def committed(self, key_hash: str) -> None:
        """After the commit (run by the transaction itself): forget the key here, and
        tell the other processes over Redis."""
        self._cache.invalidate(key_hash)
        if self._redis_url is None:
            return
        try:
            self._redis_client().publish(REDIS_CHANNEL, key_hash)
        except Exception as error:  # the poller still carries the change within 1 s
            self._warnings.warning(
                "publish",
                "could not publish a key change on Redis (%s); other instances will see it "
                "through the database within a second",
                type(error).__name__,
            )

    # -- the receiving side --------------------------------------------------

    def start(self) -> None:
        """Start polling (and listening); entries are vouched for once the first poll ran."""
        if self._threads:
            return
        self._stop.clear()
        try:
            with self._database.read() as session:
                self._high = session.connection().execute(_LAST_CHANGE).scalar() or 0
        except (SQLAlchemyError, StorageUnavailable) as error:
            logger.warning("could not read the key change feed (%s)", cause_name(error))
        self.poll()
        targets: list[tuple[str, Callable[[], None]]] = [("keyplane-change-poller", self._poll)]
        if self._redis_url is not None:
            targets.append(("keyplane-change-listener", self._listen_redis))
        elif not self._database.is_sqlite:
            targets.append(("keyplane-change-listener", self._listen_postgres))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        connection = self._listener_connection
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if connection is not None:
            _close_quietly(connection)
        if self._redis is not None:
            _close_quietly(self._redis)
            self._redis = None
        self._cache.unsynced()

    def poll(self) -> int:
        """Apply every change committed since the last poll; return how many keys dropped."""
        with self._poll_lock:
            started = self._monotonic()
            floor = max(0, self._high - REORDER_WINDOW)
            try:
                with self._database.read() as session:
                    rows = session.connection().execute(_CHANGES_SINCE, {"floor": floor}).all()
            except (SQLAlchemyError, StorageUnavailable) as error:
                self._warnings.warning(
                    "poll",
                    "could not poll the key change feed (%s); the key cache is bypassed "
                    "until it can",
                    cause_name(error),
                )
                return 0
            self._warnings.recovered("poll", "the key change feed can be polled again")
            dropped = 0
            for pk, key_hash in rows:
                if pk in self._seen:
                    continue
                self._seen.add(pk)
                self._cache.invalidate(key_hash)
                dropped += 1
                self._high = max(self._high, pk)
            low = self._high - REORDER_WINDOW
            if len(self._seen) > 2 * REORDER_WINDOW:
                self._seen = {pk for pk in self._seen if pk > low}
            self._cache.synced(started, self.sync_bound)
        self._prune()
        return dropped

    def _prune(self) -> None:
        now = self._monotonic()
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            with self._database.write() as session:
                session.execute(
                    delete(KeyChange).where(KeyChange.changed_at < self._clock() - RETENTION)
                )
        except (SQLAlchemyError, StorageUnavailable) as error:
            self._warnings.warning(
                "prune", "could not prune the key change feed (%s)", cause_name(error)
            )

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll()
            except Exception:  # the poller must outlive any one bad poll
                logger.exception("key change poll failed")

    def _apply(self, key_hash: str) -> None:
        if len(key_hash) == 64:
            self._cache.invalidate(key_hash)
            self.notices += 1

    def _listen_postgres(self) -> None:
        import psycopg

        backoff = 0.1
        cargs, cparams = self._database.engine.dialect.create_connect_args(
            self._database.engine.url
        )
        while not self._stop.is_set():
            try:
                with psycopg.connect(*cargs, **cparams, autocommit=True) as connection:
                    self._listener_connection = connection
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listener_pid = connection.info.backend_pid
                    self.listener_connects += 1
                    backoff = 0.1
                    self.poll()  # whatever changed while not listening
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=0.5):
                            self._apply(notice.payload)
            except Exception as error:
                if self._stop.is_set():
                    return
                self._warnings.warning(
                    "listener",
                    "key change listener lost PostgreSQL (%s); reconnecting in %.1fs",
                    type(error).__name__,
                    backoff,
                )
            finally:
                self._listener_connection = None
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _listen_redis(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub: Any = None
            try:
                # Its own client: the subscription must not wait behind a publish.
                subscriber = self._subscriber = redis_client(self._redis_url, name=self.client_name)
                pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(REDIS_CHANNEL)
                self.listener_connects += 1
                backoff = 0.1
                self.poll()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        self._apply(data.decode() if isinstance(data, bytes) else str(data))
            except Exception as error:
                if self._stop.is_set():
                    return
                self._warnings.warning(
                    "listener",
                    "key change listener lost Redis (%s); reconnecting in %.1fs",
                    type(error).__name__,
                    backoff,
                )
            finally:
                if pubsub is not None:
                    _close_quietly(pubsub)
                if self._subscriber is not None:
                    _close_quietly(self._subscriber)
                    self._subscriber = None
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _redis_client(self) -> Any:
        if self._redis is None:
            self._redis = redis_client(self._redis_url)
        return self._redis


def _close_quietly(resource: Any) -> None:
    with contextlib.suppress(Exception):  # closing is best effort at shutdown
        resource.close()
