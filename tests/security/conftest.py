from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from keyplane.config import Settings
from keyplane.service.services import Services
from tests.conftest import served_app
from tests.console.conftest import (  # noqa: F401 - the console's fixtures, shared here
    browser,
    make_browser,
    open_signup,
    owner,
)
from tests.support import Clock

MakeClient = Callable[..., tuple[TestClient, Services]]


@pytest.fixture
def make_client(settings: Settings, clock: Clock) -> Iterator[MakeClient]:
    """A served app of its own (``served_app``: what ``keyplane serve`` runs) on the test
    database, with some settings changed."""
    with ExitStack() as stack:

        def make(peer: str = "203.0.113.7", **changes: Any) -> tuple[TestClient, Services]:
            services = Services.open(dataclasses.replace(settings, **changes), clock=clock)
            stack.callback(services.close)
            app = served_app()
            app.state.services = services
            client = stack.enter_context(
                TestClient(app, client=(peer, 50000), follow_redirects=False)
            )
            return client, services

        yield make
