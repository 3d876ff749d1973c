"""The connection limits' settings (validated at start, derived from the open-file
limit) and the once-per-interval log of ``cli/connections.py``."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from keyplane.cli.connections import ConnectionLimits, logger
from keyplane.config import ConfigError, Settings, listen_backlog, open_file_limit
from keyplane.logs import Throttled
from tests.processes import file_limit


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("KEYPLANE_HEADER_TIMEOUT", "0", id="header-timeout"),
        pytest.param("KEYPLANE_BODY_TIMEOUT", "soon", id="body-timeout"),
        pytest.param("KEYPLANE_SEND_TIMEOUT", "0.1", id="send-timeout"),
        pytest.param("KEYPLANE_KEEP_ALIVE_TIMEOUT", "0", id="keep-alive"),
        pytest.param("KEYPLANE_MAX_CONNECTIONS", "0", id="max-connections"),
        pytest.param(
            "KEYPLANE_MAX_CONNECTIONS", str(open_file_limit()), id="max-connections-over-files"
        ),
        pytest.param("KEYPLANE_MAX_CONNECTIONS_PER_IP", "-1", id="per-ip"),
    ],
)
def test_a_wrong_connection_setting_names_itself(variable: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path), variable: value})


def test_the_per_address_cap_cannot_exceed_the_bound(tmp_path: Path) -> None:
    env = {"KEYPLANE_DATA_DIR": str(tmp_path), "KEYPLANE_MAX_CONNECTIONS": "100"}
    with pytest.raises(ConfigError, match="KEYPLANE_MAX_CONNECTIONS_PER_IP"):
        Settings.from_env({**env, "KEYPLANE_MAX_CONNECTIONS_PER_IP": "101"})
    settings = Settings.from_env({**env, "KEYPLANE_MAX_CONNECTIONS_PER_IP": "0"})
    assert ConnectionLimits.of(settings).max_connections_per_ip == 0  # no cap
    assert Settings.from_env(env).connections_per_ip == 25  # a quarter by default


def test_the_bound_is_derived_below_the_open_file_limit() -> None:
    """In a process whose file limit is 256: 128 connections, 32 per address, backlog 21
    (three loop turns of accepted connections fit in the 64 files beside the others)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from keyplane.config import Settings, listen_backlog\n"
            "s = Settings.from_env({'KEYPLANE_DATA_DIR': '/nonexistent'})\n"
            "print(s.max_connections, s.connections_per_ip, listen_backlog(s.max_connections))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=file_limit(256),
        check=True,
    )
    assert done.stdout.split() == ["128", "32", "21"]
    files = open_file_limit()
    settings = Settings.from_env({"KEYPLANE_DATA_DIR": "/nonexistent"})
    assert settings.max_connections == files - max(128, files // 4)
    assert 16 <= listen_backlog(settings.max_connections) <= 2048


def test_a_repeated_event_is_logged_once_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttled = Throttled(logger, interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="keyplane.connections"):
        for _ in range(500):
            throttled.warning("refused", "Refused a connection")
            now[0] += 0.01  # 5 s in all: one line
        now[0] = 10.5
        throttled.warning("refused", "Refused a connection")
        throttled.warning("other", "Something else")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "Refused a connection",
        "Refused a connection (and 499 more in the last 10 s)",
        "Something else",
    ]
