"""The grant decision: each code, and the documented order in which rules apply."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.core.grant import (
    UNAUTHENTICATED_CODES,
    Decision,
    GrantCode,
    KeyState,
    decide,
)
from keyplane.core.network import IPAddress, parse_allowlist, parse_ip

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(days=1)
FUTURE = NOW + timedelta(days=1)

OFFICE = parse_allowlist(["203.0.113.0/24"])
OFFICE_V6 = parse_allowlist(["2001:db8::/32"])
INSIDE = parse_ip("203.0.113.7")
OUTSIDE = parse_ip("198.51.100.7")
INSIDE_V6 = parse_ip("2001:db8::1")
OUTSIDE_V6 = parse_ip("2001:db9::1")


def make_key(**changes: Any) -> KeyState:
    """A key that grants ``keys:read`` from anywhere, forever, with ``changes`` applied."""
    base = KeyState(
        key_id="key_0000000000000000",
        name="ci",
        hint="kp_...abcd",
        project_id="prj_0000000000000000",
        organization_id="org_0000000000000000",
        scopes=("keys:read",),
        enabled=True,
        revoked_at=None,
        expires_at=None,
    )
    return dataclasses.replace(base, **changes)


# Every rule broken at once; each row below repairs the rules before the one it tests.
ALL_BAD: dict[str, Any] = {
    "revoked_at": PAST,
    "enabled": False,
    "expires_at": PAST,
    "ip_allowlist": OFFICE,
    "scopes": (),
}


@pytest.mark.parametrize(
    ("changes", "client_ip", "required", "expected"),
    [
        # --- VALID ---
        pytest.param({}, None, (), GrantCode.VALID, id="if_plain_key_then_valid"),
        pytest.param({}, None, ("keys:read",), GrantCode.VALID, id="if_scope_held_then_valid"),
        pytest.param(
            {"expires_at": FUTURE}, None, (), GrantCode.VALID, id="if_expiry_in_future_then_valid"
        ),
        pytest.param(
            {"expires_at": NOW + timedelta(microseconds=1)},
            None,
            (),
            GrantCode.VALID,
            id="if_expiry_one_microsecond_ahead_then_valid",
        ),
        pytest.param(
            {"scopes": ()}, None, (), GrantCode.VALID, id="if_no_scope_required_then_valid"
        ),
        # --- REVOKED ---
        pytest.param(
            {"revoked_at": PAST}, None, (), GrantCode.REVOKED, id="if_key_revoked_then_revoked"
        ),
        pytest.param(
            {"revoked_at": FUTURE},
            None,
            (),
            GrantCode.REVOKED,
            id="if_revoked_at_set_then_revoked_whatever_its_time",
        ),
        pytest.param(
            {"revoked_at": PAST, "expires_at": PAST},
            None,
            (),
            GrantCode.REVOKED,
            id="if_key_revoked_then_revoked_even_when_also_expired",
        ),
        pytest.param(
            {"revoked_at": PAST, "enabled": False},
            None,
            (),
            GrantCode.REVOKED,
            id="if_key_revoked_then_revoked_even_when_also_disabled",
        ),
        pytest.param(
            ALL_BAD,
            OUTSIDE,
            ("keys:write",),
            GrantCode.REVOKED,
            id="if_key_revoked_then_revoked_even_when_every_rule_fails",
        ),
        # --- DISABLED ---
        pytest.param(
            {"enabled": False}, None, (), GrantCode.DISABLED, id="if_key_disabled_then_disabled"
        ),
        pytest.param(
            {"enabled": False, "expires_at": PAST},
            None,
            (),
            GrantCode.DISABLED,
            id="if_key_disabled_then_disabled_even_when_also_expired",
        ),
        pytest.param(
            {**ALL_BAD, "revoked_at": None},
            OUTSIDE,
            ("keys:write",),
            GrantCode.DISABLED,
            id="if_key_disabled_then_disabled_even_when_ip_and_scope_fail",
        ),
        # --- EXPIRED ---
        pytest.param(
            {"expires_at": PAST}, None, (), GrantCode.EXPIRED, id="if_expiry_passed_then_expired"
        ),
        pytest.param(
            {"expires_at": NOW},
            None,
            (),
            GrantCode.EXPIRED,
            id="if_expiry_equals_now_then_expired",
        ),
        pytest.param(
            {**ALL_BAD, "revoked_at": None, "enabled": True},
            OUTSIDE,
            ("keys:write",),
            GrantCode.EXPIRED,
            id="if_key_expired_then_expired_even_when_ip_and_scope_fail",
        ),
        # --- FORBIDDEN ---
        pytest.param(
            {"ip_allowlist": OFFICE},
            INSIDE,
            (),
            GrantCode.VALID,
            id="if_client_inside_allowlist_then_valid",
        ),
        pytest.param(
            {"ip_allowlist": OFFICE},
            OUTSIDE,
            (),
            GrantCode.FORBIDDEN,
            id="if_client_outside_allowlist_then_forbidden",
        ),
        pytest.param(
            {"ip_allowlist": OFFICE},
            None,
            (),
            GrantCode.FORBIDDEN,
            id="if_allowlist_and_client_ip_unknown_then_forbidden",
        ),
        pytest.param(
            {}, None, (), GrantCode.VALID, id="if_no_allowlist_and_client_ip_unknown_then_valid"
        ),
        pytest.param(
            {"ip_allowlist": OFFICE},
            OUTSIDE,
            ("keys:write",),
            GrantCode.FORBIDDEN,
            id="if_client_outside_allowlist_then_forbidden_even_when_scope_missing",
        ),
        pytest.param(
            {"ip_allowlist": OFFICE_V6},
            INSIDE_V6,
            (),
            GrantCode.VALID,
            id="if_ipv6_client_inside_ipv6_allowlist_then_valid",
        ),
        pytest.param(
            {"ip_allowlist": OFFICE_V6},
            OUTSIDE_V6,
            (),
            GrantCode.FORBIDDEN,
            id="if_ipv6_client_outside_ipv6_allowlist_then_forbidden",
        ),
        pytest.param(
            {"ip_allowlist": OFFICE_V6},
            INSIDE,
            (),
            GrantCode.FORBIDDEN,
            id="if_ipv4_client_and_ipv6_only_allowlist_then_forbidden",
        ),
        pytest.param(
            {"ip_allowlist": OFFICE},
            INSIDE_V6,
            (),
            GrantCode.FORBIDDEN,
            id="if_ipv6_client_and_ipv4_only_allowlist_then_forbidden",
        ),
        pytest.param(
            {"ip_allowlist": OFFICE + OFFICE_V6},
            INSIDE_V6,
            (),
            GrantCode.VALID,
            id="if_mixed_allowlist_then_either_family_may_match",
        ),
        pytest.param(
            {"ip_allowlist": OFFICE},
            parse_ip("::ffff:203.0.113.7"),
            (),
            GrantCode.VALID,
            id="if_ipv4_mapped_client_inside_ipv4_allowlist_then_valid",
        ),
        # --- INSUFFICIENT_SCOPE ---
        pytest.param(
            {},
            None,
            ("keys:write",),
            GrantCode.INSUFFICIENT_SCOPE,
            id="if_scope_missing_then_insufficient_scope",
        ),
        pytest.param(
            {"scopes": ("*",)},
            None,
            ("keys:write", "projects:read", "billing:invoices:read"),
            GrantCode.VALID,
            id="if_key_holds_star_then_every_scope_granted",
        ),
        pytest.param(
            {"scopes": ("keys:*",)},
            None,
            ("keys:read", "keys:write", "keys:verify"),
            GrantCode.VALID,
            id="if_key_holds_resource_wildcard_then_resource_scopes_granted",
        ),
        pytest.param(
            {"scopes": ("keys:*",)},
            None,
            ("projects:read",),
            GrantCode.INSUFFICIENT_SCOPE,
            id="if_key_holds_resource_wildcard_then_other_resources_not_granted",
        ),
        pytest.param(
            {"scopes": ("keys:read",)},
            None,
            ("keys:*",),
            GrantCode.INSUFFICIENT_SCOPE,
            id="if_key_holds_one_action_then_resource_wildcard_not_granted",
        ),
        # --- NOT_FOUND is covered separately: there is no key to change.
    ],
)
def test_decide(
    changes: dict[str, Any],
    client_ip: IPAddress | None,
    required: tuple[str, ...],
    expected: GrantCode,
) -> None:
    key = make_key(**changes)
    decision = decide(key, now=NOW, client_ip=client_ip, required_scopes=required)
    assert decision.code is expected
    assert decision.key is key
    assert decision.valid is (expected is GrantCode.VALID)
    if expected is not GrantCode.INSUFFICIENT_SCOPE:
        assert decision.missing_scopes == ()


def test_if_no_key_then_not_found() -> None:
    decision = decide(None, now=NOW, client_ip=OUTSIDE, required_scopes=("keys:write",))
    assert decision == Decision(GrantCode.NOT_FOUND)
    assert decision.key is None
    assert not decision.valid


def test_if_key_revoked_then_revoked_even_when_also_expired() -> None:
    key = make_key(revoked_at=PAST, expires_at=PAST)
    assert decide(key, now=NOW).code is GrantCode.REVOKED


def test_if_key_disabled_then_disabled_even_when_also_expired() -> None:
    key = make_key(enabled=False, expires_at=PAST)
    assert decide(key, now=NOW).code is GrantCode.DISABLED


def test_if_key_expires_exactly_now_then_expired() -> None:
    assert decide(make_key(expires_at=NOW), now=NOW).code is GrantCode.EXPIRED


def test_if_key_expired_then_expired_even_when_ip_not_allowed() -> None:
    key = make_key(expires_at=PAST, ip_allowlist=OFFICE)
    assert decide(key, now=NOW, client_ip=OUTSIDE).code is GrantCode.EXPIRED


def test_if_ip_not_allowed_then_forbidden_even_when_scope_missing() -> None:
    key = make_key(ip_allowlist=OFFICE, scopes=())
    decision = decide(key, now=NOW, client_ip=OUTSIDE, required_scopes=("keys:read",))
    assert decision.code is GrantCode.FORBIDDEN
    assert decision.missing_scopes == ()


def test_if_scopes_missing_then_they_are_listed_in_the_order_asked() -> None:
    key = make_key(scopes=("keys:read", "audit:*"))
    decision = decide(
        key,
        now=NOW,
        required_scopes=("projects:write", "keys:read", "audit:read", "keys:write"),
    )
    assert decision.code is GrantCode.INSUFFICIENT_SCOPE
    assert decision.missing_scopes == ("projects:write", "keys:write")


def test_if_required_scopes_is_a_generator_then_it_is_honoured() -> None:
    key = make_key(scopes=("keys:read",))
    decision = decide(key, now=NOW, required_scopes=(s for s in ["keys:read", "keys:write"]))
    assert decision.missing_scopes == ("keys:write",)


def test_expiry_is_compared_across_timezones() -> None:
    # 12:00 UTC is 14:00 at UTC+2: the same instant, so expired.
    plus_two = timezone(timedelta(hours=2))
    key = make_key(expires_at=datetime(2030, 6, 1, 14, 0, tzinfo=plus_two))
    assert decide(key, now=NOW).code is GrantCode.EXPIRED
    later = make_key(expires_at=datetime(2030, 6, 1, 14, 1, tzinfo=plus_two))
    assert decide(later, now=NOW).code is GrantCode.VALID


@given(
    revoked=st.booleans(),
    disabled=st.booleans(),
    expired=st.booleans(),
    outside=st.booleans(),
    lacks_scope=st.booleans(),
)
@settings(max_examples=64)
def test_first_failing_rule_gives_the_code(
    revoked: bool, disabled: bool, expired: bool, outside: bool, lacks_scope: bool
) -> None:
    key = make_key(
        revoked_at=PAST if revoked else None,
        enabled=not disabled,
        expires_at=PAST if expired else FUTURE,
        ip_allowlist=OFFICE,
        scopes=() if lacks_scope else ("keys:read",),
    )
    failures = [
        (revoked, GrantCode.REVOKED),
        (disabled, GrantCode.DISABLED),
        (expired, GrantCode.EXPIRED),
        (outside, GrantCode.FORBIDDEN),
        (lacks_scope, GrantCode.INSUFFICIENT_SCOPE),
    ]
    expected = next((code for failed, code in failures if failed), GrantCode.VALID)
    decision = decide(
        key,
        now=NOW,
        client_ip=OUTSIDE if outside else INSIDE,
        required_scopes=("keys:read",),
    )
    assert decision.code is expected


def test_unauthenticated_codes_are_the_credential_failures() -> None:
    assert {
        GrantCode.NOT_FOUND,
        GrantCode.REVOKED,
        GrantCode.EXPIRED,
        GrantCode.DISABLED,
    } == UNAUTHENTICATED_CODES
    assert GrantCode.FORBIDDEN not in UNAUTHENTICATED_CODES
    assert GrantCode.INSUFFICIENT_SCOPE not in UNAUTHENTICATED_CODES


def test_grant_codes_are_their_own_names() -> None:
    for code in GrantCode:
        assert code == code.name
        assert str(code) == code.name


def test_decision_valid_only_for_valid_code() -> None:
    assert Decision(GrantCode.VALID).valid
    assert not any(Decision(code).valid for code in GrantCode if code is not GrantCode.VALID)
