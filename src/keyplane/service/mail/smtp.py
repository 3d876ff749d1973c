"""Sending one message over SMTP (the standard library's ``smtplib``).

``KEYPLANE_SMTP_URL`` picks the transport: ``smtp://`` (plain, for a relay on
the same host), ``smtp+starttls://`` (upgrade with STARTTLS, refused if the
server does not offer it) or ``smtps://`` (TLS from the first byte). TLS
certificates are checked against the system's trust store.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Final
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS: Final = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
TIMEOUT_SECONDS: Final = 15.0


class PermanentFailure(Exception):
    """The server refused the message for good (a 5xx answer): retrying will not help."""


class TemporaryFailure(Exception):
    """The message may go through later (a 4xx answer, a connection or TLS problem)."""


@dataclass(frozen=True)
class SmtpSender:
    url: str = field(repr=False)
    sender: str
    timeout: float = TIMEOUT_SECONDS

    def send(self, message: EmailMessage) -> None:
        """Send ``message``; raise :class:`PermanentFailure` or :class:`TemporaryFailure`."""
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        context = ssl.create_default_context()
        try:
            client: smtplib.SMTP
            if parts.scheme == "smtps":
                client = smtplib.SMTP_SSL(host, port, timeout=self.timeout, context=context)
            else:
                client = smtplib.SMTP(host, port, timeout=self.timeout)
            with client:
                client.ehlo()
                if parts.scheme == "smtp+starttls":
                    client.starttls(context=context)
                    client.ehlo()
                if parts.username:
                    client.login(unquote(parts.username), unquote(parts.password or ""))
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise _failure(min(codes) if codes else 550, "recipient refused") from None
        except smtplib.SMTPResponseException as error:
            raise _failure(error.smtp_code, _reason(error.smtp_error)) from None
        except (smtplib.SMTPException, OSError) as error:
            raise TemporaryFailure(type(error).__name__) from None


def _failure(code: int, reason: str) -> Exception:
    text = f"{code} {reason}"
    return PermanentFailure(text) if 500 <= code < 600 else TemporaryFailure(text)


def _reason(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text[:200]
