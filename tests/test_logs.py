"""The one rule for warnings that repeat (``logs.Throttled``)."""

from __future__ import annotations

import logging

import pytest

from keyplane.logs import Throttled


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_warning_is_logged_once_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = Ticks()
    throttled = Throttled(logging.getLogger("keyplane.test"), interval=10.0, clock=ticks)
    with caplog.at_level(logging.INFO, "keyplane.test"):
        for second in range(25):
            ticks.now = float(second)
            throttled.warning("outage", "down (%s)", "OperationalError")
            throttled.warning("other", "another kind")
        throttled.recovered("outage", "back")
        throttled.recovered("outage", "back")  # once
        throttled.recovered("never", "not logged: it never failed")
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("another kind") == 1
    assert [m for m in messages if m.startswith("down")] == [
        "down (OperationalError)",
        "down (OperationalError) (and 9 more in the last 10 s)",
        "down (OperationalError) (and 9 more in the last 10 s)",
    ]
    assert messages[-1] == "back"
    assert messages.count("back") == 1
    ticks.now = 100.0
    with caplog.at_level(logging.INFO, "keyplane.test"):
        caplog.clear()
        throttled.warning("outage", "down (%s)", "again")
    assert [r.getMessage() for r in caplog.records] == ["down (again)"]  # a new outage
