"""One grant rule: the verifier's fast path and the key status agree with ``decide``.

Hypothesis draws every field of a :class:`KeyState` that the rule reads (revoked,
enabled, expiry either side of now, allowlist, scopes, rate limit, quota) and the
request's scopes and client IP.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.core.grant import (
    GrantCode,
    KeyState,
    KeyStatus,
    decide,
    is_plainly_valid,
    key_status,
    standing,
)
from keyplane.core.network import parse_allowlist, parse_ip

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
SCOPES = ("keys:read", "keys:write", "usage:read")

moments = st.one_of(
    st.none(),
    st.sampled_from([NOW - timedelta(days=1), NOW, NOW + timedelta(microseconds=1)]),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
allowlists = st.sampled_from(
    [(), parse_allowlist(["203.0.113.0/24"]), parse_allowlist(["2001:db8::/32", "10.0.0.0/8"])]
)
client_ips = st.sampled_from(
    [None, parse_ip("203.0.113.7"), parse_ip("198.51.100.7"), parse_ip("2001:db8::1")]
)
scope_sets = st.lists(st.sampled_from(SCOPES), unique=True).map(tuple)

key_states = st.builds(
    KeyState,
    key_id=st.just("key_0000000000000000"),
    name=st.just("ci"),
    hint=st.just("kp_...abcd"),
    project_id=st.just("prj_0000000000000000"),
    organization_id=st.just("org_0000000000000000"),
    scopes=scope_sets,
    enabled=st.booleans(),
    revoked_at=moments,
    expires_at=moments,
    ip_allowlist=allowlists,
    rate_limit=st.none() | st.integers(1, 1000),
    rate_limit_window=st.integers(1, 3600),
    quota_limit=st.none() | st.integers(0, 1000),
    quota_refill=st.sampled_from([None, "day", "month"]),
    quota_used=st.integers(0, 2000),
)


@settings(max_examples=2000)
@given(key=key_states, required=scope_sets, ip=client_ips)
def test_the_fast_path_is_exactly_the_unscoped_valid_decisions_without_limits(
    key, required, ip
) -> None:
    plain = is_plainly_valid(key, NOW, required)
    unknown_ip = decide(key, now=NOW, client_ip=None, required_scopes=required)
    limited = key.rate_limit is not None or key.quota_limit is not None
    # Valid from an unknown address means valid from every address (no allowlist);
    # a request that names scopes always takes the full rule.
    assert plain == (unknown_ip.code is GrantCode.VALID and not limited and not required)
    if plain:
        decision = decide(key, now=NOW, client_ip=ip, required_scopes=required)
        assert decision.code is GrantCode.VALID
        assert decision.key is key
        assert decision.missing_scopes == ()


@settings(max_examples=1000)
@given(key=key_states, required=scope_sets, ip=client_ips)
def test_the_status_is_the_decision_on_the_key_alone(key, required, ip) -> None:
    code = standing(key.revoked_at, key.enabled, key.expires_at, NOW)
    status = key_status(key.revoked_at, key.enabled, key.expires_at, NOW)
    decision = decide(key, now=NOW, client_ip=ip, required_scopes=required)
    if status is KeyStatus.ACTIVE:
        assert code is GrantCode.VALID
        assert decision.code not in {GrantCode.REVOKED, GrantCode.DISABLED, GrantCode.EXPIRED}
    else:
        assert code.value == status.name
        assert decision.code is code
