"""Logging set-up, with a filter that masks any key that reaches a log record."""

from __future__ import annotations

import logging
import logging.config

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
