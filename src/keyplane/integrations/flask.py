"""Flask: the ``@require_key(scopes=[...])`` view decorator, and :func:`init_app`.

.. code-block:: python

    app = Flask(__name__)
    init_app(app, RemoteVerifier())       # or LocalVerifier.open()

    @app.get("/reports")
    @require_key(scopes=["reports:read"])
    def reports(): return {"key": g.keyplane.key_id}

The key's :class:`KeyIdentity` is ``flask.g.keyplane`` inside the view; a
refused request gets a problem+json 400/401/403/429/503 and the view never runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from keyplane.core.network import IPNetwork
from keyplane.integrations import guard
from keyplane.integrations.verifiers import KeyIdentity, KeyVerifier
from keyplane.integrations.wsgi import ENVIRON_KEY, facts_of

EXTENSION = "keyplane"
F = TypeVar("F", bound=Callable[..., Any])


def init_app(app: Flask, verifier: KeyVerifier) -> None:
    """Make ``verifier`` the default of :func:`require_key` for this app."""
    app.extensions[EXTENSION] = verifier


def require_key(
    scopes: Iterable[str] = (),
    *,
    verifier: KeyVerifier | None = None,
    trusted_proxies: tuple[IPNetwork, ...] = (),
) -> Callable[[F], F]:
    required = tuple(scopes)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            known = request.environ.get(ENVIRON_KEY)
            if isinstance(known, KeyIdentity):
                outcome = guard.recheck(known, required)
            else:
                chosen = verifier or current_app.extensions.get(EXTENSION)
                if chosen is None:
                    raise RuntimeError(
                        "require_key has no verifier: pass verifier=... or call "
                        "keyplane.integrations.flask.init_app(app, verifier)"
                    )
                outcome = guard.check(facts_of(request.environ, trusted_proxies), chosen, required)
            if not outcome.granted:
                status, headers, body = guard.wsgi_response(guard.problem(outcome))
                return Response(body, status=status, headers=headers)
            g.keyplane = outcome.identity
            request.environ[ENVIRON_KEY] = outcome.identity
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
