"""Last-used tracking through a write-behind buffer.

Verification only notes the use in memory (a dict assignment); a background
thread writes the latest use of each key at least once per interval and once
more at shutdown. No request waits on a database write, and a crash loses at
most one interval of last-used timestamps.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import bindparam, or_, update
from sqlalchemy.exc import SQLAlchemyError

from keyplane.service.records import Usage
from keyplane.service.validation import clip_user_agent
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey

logger = logging.getLogger("keyplane.usage")


_UPDATE_LAST_USED = (
    update(ApiKey)
    .where(ApiKey.id == bindparam("key_id"))
    .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < bindparam("at")))
    .values(
        last_used_at=bindparam("at"),
        last_used_ip=bindparam("ip"),
        last_used_user_agent=bindparam("user_agent"),
    )
)


class UsageBuffer:
    def __init__(self, database: Database, *, interval: float = 1.0) -> None:
        self._database = database
        self.interval = interval
        self._pending: dict[str, Usage] = {}
        self._in_flight: dict[str, Usage] = {}
        # Guards the swap of ``_pending`` only (held for nanoseconds, on the hot path);
        # ``_flush_lock`` serializes whole flushes, database write included.
        self._swap_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, key_id: str, usage: Usage) -> None:
        """Note a use; only the latest per key is kept until the next flush."""
        with self._swap_lock:
            self._pending[key_id] = usage

    def pending(self, key_id: str) -> Usage | None:
        """A use noted but not yet written, so reads can show it at once."""
        return self._pending.get(key_id) or self._in_flight.get(key_id)

    def flush(self) -> int:
        """Write every pending use; return how many keys were updated."""
        with self._flush_lock:
            with self._swap_lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            self._in_flight = pending
            try:
                with self._database.write() as session:
                    session.connection().execute(_UPDATE_LAST_USED, _rows(pending))
            except SQLAlchemyError as error:
                # Keep the uses for the next try, unless a newer one came in meanwhile.
                with self._swap_lock:
                    for key_id, usage in pending.items():
                        self._pending.setdefault(key_id, usage)
                logger.warning(
                    "could not write last-used times (%s); will retry", type(error).__name__
                )
                return 0
            finally:
                self._in_flight = {}
            return len(pending)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="keyplane-usage-flusher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher and write what is still pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the flusher must outlive any one bad flush
                logger.exception("last-used flush failed")


def _rows(pending: dict[str, Usage]) -> list[dict[str, object]]:
    return [
        {
            "key_id": key_id,
            "at": usage.at,
            "ip": str(usage.client_ip) if usage.client_ip is not None else None,
            "user_agent": clip_user_agent(usage.user_agent),
        }
        for key_id, usage in pending.items()
    ]
