from __future__ import annotations

from pathlib import Path

import pytest

from tests.live import isolated_key_stores, server

__all__ = ["isolated_key_stores", "server"]


@pytest.fixture(autouse=True)
def _isolated(isolated_key_stores: Path) -> Path:
    """Every test here runs with no real key store, config dir or .env in sight."""
    return isolated_key_stores
