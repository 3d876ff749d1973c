"""Brute-force counters: shared over Redis between processes, local while Redis fails."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from limits.storage import MemoryStorage, storage_from_string

from keyplane.config import Settings
from keyplane.core.errors import TooManyAttempts
from keyplane.service.limits.failed_keys import FailedKeyLimiter
from keyplane.service.limits.sign_in_throttle import LoginThrottle
from keyplane.service.services import Services
from tests.conftest import require_service


class BrokenStorage(MemoryStorage):
    """A shared storage whose server is down: every call fails as redis-py's would."""

    def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("Redis is down")

    def get_moving_window(self, *args: Any, **kwargs: Any) -> tuple[float, int]:
        raise ConnectionError("Redis is down")

    def clear(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Redis is down")


def test_a_failing_shared_storage_falls_back_to_counting_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = FailedKeyLimiter("3 per minute", BrokenStorage())
    with caplog.at_level(logging.WARNING, "keyplane.security"):
        limiter.failed("198.51.100.9")
        limiter.failed("198.51.100.9")
        limiter.failed("198.51.100.9")
        with pytest.raises(TooManyAttempts):
            limiter.failed("198.51.100.9")  # the fourth, counted in memory
    outages = [r for r in caplog.records if "shared attempt counters" in r.getMessage()]
    assert len(outages) == 1  # once, not per attempt


def test_sign_in_throttle_survives_a_failing_shared_storage() -> None:
    throttle = LoginThrottle(BrokenStorage(), account_limit="2 per minute", ip_limit="9 per minute")
    throttle.check("ada@example.com", "198.51.100.9")
    throttle.failed("ada@example.com", "198.51.100.9")
    throttle.failed("ada@example.com", "198.51.100.9")
    with pytest.raises(TooManyAttempts):
        throttle.check("ada@example.com", "198.51.100.9")


def test_two_processes_on_one_redis_share_the_failed_key_count() -> None:
    url = require_service("KEYPLANE_TEST_REDIS_URL", "Redis")
    ip = f"203.0.113.{secrets.randbelow(250) + 1}-{secrets.token_hex(4)}"  # unique per run
    first = FailedKeyLimiter("3 per minute", storage_from_string(url))
    second = FailedKeyLimiter("3 per minute", storage_from_string(url))
    try:
        first.failed(ip)
        second.failed(ip)
        first.failed(ip)
        with pytest.raises(TooManyAttempts):
            second.failed(ip)  # the fourth across both
    finally:
        first.unblock(ip)


def test_with_redis_configured_services_share_the_counters(tmp_path: Path) -> None:
    url = require_service("KEYPLANE_TEST_REDIS_URL", "Redis")
    settings = Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path), "KEYPLANE_REDIS_URL": url})
    services = Services.open(settings)
    try:
        assert services.limiter.shared_storage is not None
        ip = f"192.0.2.{secrets.randbelow(250) + 1}-{secrets.token_hex(4)}"
        other = FailedKeyLimiter(settings.failed_key_limit, storage_from_string(url))
        for _ in range(20):
            other.failed(ip)  # another instance spent the budget
        with pytest.raises(TooManyAttempts):
            services.failed_keys.failed(ip)
        other.unblock(ip)
    finally:
        services.close()
