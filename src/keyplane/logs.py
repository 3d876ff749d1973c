"""Logging set-up, with a filter that masks any key that reaches a log record, and
:class:`Throttled`, the one rule for a warning that can repeat (an outage, a flood).
"""

from __future__ import annotations

import logging
import logging.config
import threading
import time
from collections.abc import Callable
from typing import Final

from keyplane.core.keys import KeyFormat


class RedactKeys(logging.Filter):
    """Replaces every checksum-valid key in a record's message with its hint.

    A second line of defence: nothing in Keyplane logs a key on purpose, but a
    library might echo a header or a URL.
    """

    def __init__(self, key_format: KeyFormat) -> None:
        super().__init__()
        self._format = key_format

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._format.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self._format.redact(text)
        return True


#: Seconds between two lines about the same repeated event.
REPEAT_INTERVAL: Final = 10.0


class Throttled:
    """At most one log line per kind of event per interval, with the count since the last.

    What can fail over and over (a database or Redis outage seen by a loop that
    retries every half second, a flood of refused connections) logs its first
    occurrence at once, then one line per interval saying how many more there
    were, and one line when it recovers: an outage is a few lines, never a
    flood. Thread-safe: the service's loops run on threads of their own.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = REPEAT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        #: kind -> (when it was last logged, occurrences not logged since)
        self._seen: dict[str, tuple[float, int]] = {}

    def due(self, kind: str) -> int | None:
        """None if ``kind`` was logged less than an interval ago (the occurrence is
        counted); else how many went unlogged since (the caller logs now)."""
        now = self.clock()
        with self._lock:
            last = self._seen.get(kind)
            if last is not None and now - last[0] < self.interval:
                self._seen[kind] = (last[0], last[1] + 1)
                return None
            self._seen[kind] = (now, 0)
        return last[1] if last is not None else 0

    def warning(self, kind: str, message: str, *args: object) -> None:
        skipped = self.due(kind)
        if skipped is None:
            return
        if skipped:
            message += " (and %d more in the last %.0f s)"
            args = (*args, skipped, self.interval)
        self.logger.warning(message, *args)

    def recovered(self, kind: str, message: str, *args: object) -> None:
        """Log ``message`` once if ``kind`` had been warned about, and start afresh."""
        with self._lock:
            failing = self._seen.pop(kind, None) is not None
        if failing:
            self.logger.info(message, *args)


def configure_logging(level: str, key_format: KeyFormat) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"redact": {"()": RedactKeys, "key_format": key_format}},
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
            },
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "filters": ["redact"],
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"level": level.upper(), "handlers": ["stderr"]},
            "loggers": {
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
                "alembic": {"level": "WARNING"},
            },
        }
    )
