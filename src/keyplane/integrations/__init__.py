"""Protect your own API with Keyplane keys.

- :class:`~keyplane.integrations.asgi.KeyplaneMiddleware`: pure ASGI middleware.
- :func:`keyplane.integrations.fastapi.require_key`: a FastAPI dependency.
- :class:`~keyplane.integrations.wsgi.KeyplaneWSGIMiddleware` and
  :func:`keyplane.integrations.flask.require_key`: WSGI and Flask.

Each needs a verifier: :class:`LocalVerifier` (in-process, on Keyplane's
database) or :class:`RemoteVerifier` (through the server's ``/api/v1/verify``).
Flask is imported only by ``keyplane.integrations.flask``.
"""

from __future__ import annotations

from keyplane.integrations.asgi import KeyplaneMiddleware
from keyplane.integrations.verifiers import (
    KeyIdentity,
    KeyVerifier,
    LocalVerifier,
    Outcome,
    RemoteVerifier,
    verifier_from_env,
)
from keyplane.integrations.wsgi import KeyplaneWSGIMiddleware

__all__ = [
    "KeyIdentity",
    "KeyVerifier",
    "KeyplaneMiddleware",
    "KeyplaneWSGIMiddleware",
    "LocalVerifier",
    "Outcome",
    "RemoteVerifier",
    "verifier_from_env",
]
