"""A WSGI middleware that lets in only requests with a good Keyplane key.

On success the key's :class:`KeyIdentity` is in ``environ["keyplane"]``;
otherwise the request gets a problem+json 400/401/403/429/503.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from keyplane.core.network import IPNetwork
from keyplane.integrations import guard
from keyplane.integrations._middleware import GuardedApp

ENVIRON_KEY = "keyplane"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def facts_of(
    environ: dict[str, Any], trusted_proxies: tuple[IPNetwork, ...] = ()
) -> guard.RequestFacts:
    headers = {
        name[5:].replace("_", "-").lower(): value
        for name, value in environ.items()
        if name.startswith("HTTP_") and isinstance(value, str)
    }
    return guard.RequestFacts(
        headers,
        environ.get("PATH_INFO", ""),
        environ.get("QUERY_STRING", ""),
        environ.get("REMOTE_ADDR"),
        trusted_proxies,
    )


class KeyplaneWSGIMiddleware(GuardedApp[WSGIApp]):
    """``app.wsgi_app = KeyplaneWSGIMiddleware(app.wsgi_app, verifier, scopes=[...])``."""

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if guard.excluded(environ.get("PATH_INFO", ""), self.exclude_paths):
            return self.app(environ, start_response)
        outcome = guard.check(facts_of(environ, self.trusted_proxies), self.verifier, self.scopes)
        if outcome.granted:
            environ[ENVIRON_KEY] = outcome.identity
            return self.app(environ, start_response)
        status, headers, body = guard.wsgi_response(guard.problem(outcome))
        start_response(status, headers)
        return [body]
