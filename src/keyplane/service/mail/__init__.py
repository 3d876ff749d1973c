"""Outgoing mail: an outbox table written in the transaction that causes a message,
and a worker that sends it over SMTP with retries (``outbox.py``, ``smtp.py``)."""
