from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import chromium, chromium_or_skip
from tests.processes import server


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium_or_skip()
    with chromium() as launched:
        yield launched


@pytest.fixture
def console_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh ``keyplane serve`` on SQLite, flushing last-used times every 0.1 s."""
    monkeypatch.setenv("KEYPLANE_USAGE_FLUSH_INTERVAL", "0.1")
    monkeypatch.delenv("KEYPLANE_SIGNUP", raising=False)
    with server(tmp_path / "data", tmp_path / "server.log") as base:
        yield base
