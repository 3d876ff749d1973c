"""What the ASGI and the WSGI middleware share: the app they guard and how."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from keyplane.core.network import IPNetwork
from keyplane.integrations.verifiers import KeyVerifier

App = TypeVar("App")


class GuardedApp(Generic[App]):
    """``app`` behind ``verifier``: requests need a key with ``scopes``.

    ``exclude_paths``: exact paths or prefixes ending in ``/`` that need no key
    (health checks). ``trusted_proxies``: CIDRs whose ``X-Forwarded-For`` is
    believed for the client IP (the key's allowlist), as Keyplane itself does.
    """

    def __init__(
        self,
        app: App,
        verifier: KeyVerifier,
        *,
        scopes: Iterable[str] = (),
        exclude_paths: Iterable[str] = (),
        trusted_proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.scopes = tuple(scopes)
        self.exclude_paths = tuple(exclude_paths)
        self.trusted_proxies = trusted_proxies
