from __future__ import annotations

import pytest

from keyplane.service.limits.sign_in_throttle import LoginThrottle, TooManyAttempts


def test_failures_per_account_add_up_across_addresses() -> None:
    throttle = LoginThrottle(account_limit="3 per minute", ip_limit="100 per minute")
    for index in range(3):
        throttle.check("a@x.test", f"192.0.2.{index}")
        throttle.failed("A@x.test ", f"192.0.2.{index}")
    with pytest.raises(TooManyAttempts) as raised:
        throttle.check("a@x.test", "192.0.2.99")
    assert 0 < raised.value.retry_after <= 60
    throttle.check("b@x.test", "192.0.2.99")


def test_failures_per_address_add_up_across_accounts() -> None:
    throttle = LoginThrottle(account_limit="100 per minute", ip_limit="2 per minute")
    throttle.failed("a@x.test", "192.0.2.1")
    throttle.failed("b@x.test", "192.0.2.1")
    with pytest.raises(TooManyAttempts):
        throttle.check("c@x.test", "192.0.2.1")
    throttle.check("c@x.test", "192.0.2.2")
    throttle.check("c@x.test", None)


def test_the_message_names_no_account() -> None:
    throttle = LoginThrottle(account_limit="1 per minute")
    throttle.failed("secret@x.test", None)
    with pytest.raises(TooManyAttempts) as raised:
        throttle.check("secret@x.test", None)
    assert "secret" not in str(raised.value)
