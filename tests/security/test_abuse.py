"""Brute force: failed keys limited per client IP, sign-ins per account and IP; the
client IP from the socket, or from X-Forwarded-For behind trusted proxies only."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keyplane.config import ConfigError, Settings
from keyplane.core.errors import TooManyAttempts
from keyplane.core.network import parse_allowlist
from keyplane.service.limits.failed_keys import FailedKeyLimiter
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from tests.console.conftest import Browser
from tests.security.conftest import MakeClient
from tests.support import Tenant, bearer

WHOAMI = "/api/v1/whoami"


def _bad_keys(services: Services, count: int) -> list[str]:
    return [services.settings.key_format.generate().reveal() for _ in range(count)]


def test_if_one_address_sends_too_many_bad_keys_then_it_gets_429_and_others_do_not(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client, services = make_client(failed_key_limit="5 per minute")
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    caplog.set_level(logging.WARNING, "keyplane.security")
    statuses = [
        client.get(WHOAMI, headers=bearer(key)).status_code for key in _bad_keys(services, 8)
    ]
    assert statuses == [401] * 5 + [429] * 3
    refused = client.get(WHOAMI, headers=bearer(_bad_keys(services, 1)[0]))
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "TOO_MANY_FAILED_KEYS"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # While blocked, the address gets nothing more, not even for a real key.
    assert client.get(WHOAMI, headers=tenant.headers).status_code == 429
    # One log line for the burst, not one per refused request.
    burst = [r for r in caplog.records if "failed-key limit reached" in r.getMessage()]
    assert len(burst) == 1
    assert "203.0.113.7" in burst[0].getMessage()
    # Another address is not affected.
    other = TestClient(client.app, client=("198.51.100.9", 1))
    assert other.get(WHOAMI, headers=tenant.headers).status_code == 200
    assert other.get(WHOAMI, headers=bearer(_bad_keys(services, 1)[0])).status_code == 401


def test_if_keys_are_valid_then_they_never_count_against_the_address(
    make_client: MakeClient,
) -> None:
    client, services = make_client(failed_key_limit="3 per minute")
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )
    for _ in range(20):
        assert client.get(WHOAMI, headers=tenant.headers).status_code == 200
    assert client.get(WHOAMI, headers=bearer(_bad_keys(services, 1)[0])).status_code == 401


def test_if_the_key_is_missing_it_is_not_a_failed_attempt(make_client: MakeClient) -> None:
    client, _ = make_client(failed_key_limit="2 per minute")
    assert [client.get(WHOAMI).status_code for _ in range(5)] == [401] * 5


def test_if_x_forwarded_for_is_sent_without_trusted_proxies_then_it_cannot_dodge_the_limit(
    make_client: MakeClient,
) -> None:
    client, services = make_client(failed_key_limit="3 per minute")
    statuses = [
        client.get(
            WHOAMI, headers={**bearer(key), "X-Forwarded-For": f"192.0.2.{index}"}
        ).status_code
        for index, key in enumerate(_bad_keys(services, 5))
    ]
    assert statuses == [401, 401, 401, 429, 429]


def test_if_the_proxy_is_trusted_then_each_forwarded_client_has_its_own_budget(
    make_client: MakeClient,
) -> None:
    client, services = make_client(
        peer="10.0.0.2",
        failed_key_limit="2 per minute",
        trusted_proxies=parse_allowlist(["10.0.0.0/8"]),
    )
    tenant = Tenant.of(
        services.bootstrap(organization_name="A", project_name="P", owner_email="a@a.test")
    )

    def attempt(forwarded: str, key: str) -> int:
        return client.get(WHOAMI, headers={**bearer(key), "X-Forwarded-For": forwarded}).status_code

    bad = _bad_keys(services, 4)
    assert [attempt("192.0.2.1", key) for key in bad[:3]] == [401, 401, 429]
    assert attempt("192.0.2.2", bad[3]) == 401
    assert attempt("192.0.2.2", tenant.key) == 200
    # The address recorded for the key's last use is the forwarded one.
    record = services.keys.get(
        Caller(tenant.organization_id, ("*",), Actor.operator()), tenant.key_id
    )
    assert record.last_used_ip == "192.0.2.2"


def test_if_the_block_window_passes_then_the_address_may_try_again() -> None:
    now = [1000.0]
    limiter = FailedKeyLimiter("2 per minute", monotonic=lambda: now[0])
    limiter.failed("192.0.2.1")
    limiter.failed("192.0.2.1")
    with pytest.raises(TooManyAttempts) as refused:
        limiter.failed("192.0.2.1")
    assert refused.value.retry_after >= 1
    with pytest.raises(TooManyAttempts):
        limiter.check("192.0.2.1")
    limiter.check("192.0.2.2")
    now[0] += 61
    limiter.check("192.0.2.1")  # the local block has ended
    limiter.unblock("192.0.2.1")
    limiter.failed("192.0.2.1")  # counts afresh
    limiter.failed(None)  # an unknown address is never counted


def test_if_sign_in_limits_are_set_then_the_console_applies_them(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(login_ip_limit="2 per minute", login_account_limit="50 per minute")
    statuses = []
    for index in range(4):
        page = client.get("/console/signin")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        statuses.append(
            client.post(
                "/console/signin",
                data={"email": f"nobody{index}@x.test", "password": "wrong", "csrf_token": token},
            ).status_code
        )
    assert statuses == [401, 401, 429, 429]


def test_if_the_console_is_behind_a_trusted_proxy_then_sign_in_throttles_the_forwarded_ip(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(
        peer="10.0.0.2",
        login_ip_limit="1 per minute",
        login_account_limit="50 per minute",
        trusted_proxies=parse_allowlist(["10.0.0.0/8"]),
    )

    def sign_in(forwarded: str, email: str) -> int:
        headers = {"X-Forwarded-For": forwarded}
        page = client.get("/console/signin", headers=headers)
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        return client.post(
            "/console/signin",
            data={"email": email, "password": "wrong", "csrf_token": token},
            headers=headers,
        ).status_code

    assert sign_in("192.0.2.1", "a@x.test") == 401
    assert sign_in("192.0.2.1", "b@x.test") == 429
    assert sign_in("192.0.2.2", "c@x.test") == 401


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEYPLANE_FAILED_KEY_LIMIT", "lots"),
        ("KEYPLANE_LOGIN_ACCOUNT_LIMIT", "5 per fortnight"),
        ("KEYPLANE_LOGIN_IP_LIMIT", "-"),
        ("KEYPLANE_MAX_BODY_BYTES", "12"),
        ("KEYPLANE_MAX_HEADER_BYTES", "big"),
        ("KEYPLANE_MAX_JSON_DEPTH", "1000"),
    ],
)
def test_if_a_limit_setting_is_wrong_then_start_fails_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"KEYPLANE_DATA_DIR": "/tmp/kp-x", name: value})


def test_limit_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "KEYPLANE_DATA_DIR": "/tmp/kp-x",
            "KEYPLANE_FAILED_KEY_LIMIT": "7 per minute",
            "KEYPLANE_LOGIN_ACCOUNT_LIMIT": "3 per 10 minutes",
            "KEYPLANE_LOGIN_IP_LIMIT": "9/hour",
            "KEYPLANE_MAX_BODY_BYTES": "4096",
            "KEYPLANE_MAX_HEADER_BYTES": "2048",
            "KEYPLANE_MAX_JSON_DEPTH": "8",
        }
    )
    assert settings.max_json_depth == 8
    assert settings.failed_key_limit == "7 per minute"
    assert settings.login_account_limit == "3 per 10 minutes"
    assert settings.login_ip_limit == "9/hour"
    assert (settings.max_body_bytes, settings.max_header_bytes) == (4096, 2048)


def test_if_the_operator_ends_all_sessions_then_every_browser_is_signed_out(
    owner: Browser,
    make_browser: Callable[..., Browser],
    services: Services,
    open_signup: None,
    tmp_path: Path,
    settings: Settings,
) -> None:
    stranger = make_browser()
    stranger.sign_up("someone@globex.test", "Globex")
    assert owner.get("/console/keys").status_code == 200
    env = {
        **os.environ,
        "KEYPLANE_DATA_DIR": str(tmp_path),
        "KEYPLANE_DATABASE_URL": settings.database_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "keyplane.cli", "admin", "end-sessions", "--org", "Acme"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert b"Ended 1 console session." in done.stdout
    assert owner.get("/console/keys").status_code == 303
    assert stranger.get("/console/keys").status_code == 200
    assert services.sessions.end_all() == 1
    assert stranger.get("/console/keys").status_code == 303
