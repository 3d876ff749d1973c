"""IP addresses and CIDR allowlists."""

from __future__ import annotations

import contextlib
import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.core.errors import InvalidInput
from keyplane.core.network import MAX_ALLOWLIST, allowed, parse_allowlist, parse_ip

# --- parse_ip ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", IPv4Address("203.0.113.7")),
        ("  203.0.113.7\n", IPv4Address("203.0.113.7")),
        ("192.0.2.0", IPv4Address("192.0.2.0")),
        ("2001:db8::1", IPv6Address("2001:db8::1")),
        ("2001:DB8:0:0:0:0:0:1", IPv6Address("2001:db8::1")),
        ("::1", IPv6Address("::1")),
        ("::ffff:203.0.113.7", IPv4Address("203.0.113.7")),
        ("::ffff:cb00:7107", IPv4Address("203.0.113.7")),
        ("::203.0.113.7", IPv6Address("::203.0.113.7")),  # IPv4-compatible, not mapped
    ],
)
def test_parse_ip(text: str, expected: IPv4Address | IPv6Address) -> None:
    parsed = parse_ip(text)
    assert parsed == expected
    assert type(parsed) is type(expected)


def test_ipv4_mapped_ipv6_becomes_plain_ipv4() -> None:
    assert isinstance(parse_ip("::ffff:10.1.2.3"), IPv4Address)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "localhost",
        "testclient",
        "203.0.113",
        "203.0.113.256",
        "203.0.113.7/32",
        "203.0.113.7:8080",
        "[2001:db8::1]",
        "2001:db8::1::2",
        "1.2.3.4, 5.6.7.8",
        "\x00",
        "\u0662\u0660\u0663.\u0660.\u0661\u0661\u0663.\u0667",
    ],
)
def test_parse_ip_refuses_non_addresses(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ip(text)
    assert caught.value.field == "client_ip"


@pytest.mark.parametrize("value", [None, 3405803783])
def test_parse_ip_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_ip(value)  # type: ignore[arg-type]


@given(st.text(max_size=60))
@settings(max_examples=200)
def test_parse_ip_arbitrary_text_raises_only_invalid_input(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        parse_ip(text)


@given(st.ip_addresses())
@settings(max_examples=100)
def test_parse_ip_round_trips_any_address(address: IPv4Address | IPv6Address) -> None:
    parsed = parse_ip(str(address))
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        assert parsed == address.ipv4_mapped
    else:
        assert parsed == address


# --- parse_allowlist ---------------------------------------------------------------------


def test_parse_allowlist_of_cidrs() -> None:
    assert parse_allowlist(["203.0.113.0/24", " 2001:db8::/32 "]) == (
        IPv4Network("203.0.113.0/24"),
        IPv6Network("2001:db8::/32"),
    )


def test_parse_allowlist_single_address_is_a_host_network() -> None:
    assert parse_allowlist(["203.0.113.7", "2001:db8::1"]) == (
        IPv4Network("203.0.113.7/32"),
        IPv6Network("2001:db8::1/128"),
    )


def test_parse_allowlist_empty() -> None:
    assert parse_allowlist([]) == ()


def test_parse_allowlist_removes_duplicates_keeping_order() -> None:
    assert parse_allowlist(["10.0.0.0/8", "203.0.113.0/24", "10.0.0.0/8"]) == (
        IPv4Network("10.0.0.0/8"),
        IPv4Network("203.0.113.0/24"),
    )


def test_parse_allowlist_accepts_a_generator() -> None:
    assert parse_allowlist(entry for entry in ["10.0.0.0/8"]) == (IPv4Network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("203.0.113.7/24", id="ipv4-host-bits-set"),
        pytest.param("10.0.0.1/8", id="ipv4-host-bits-set-wide"),
        pytest.param("2001:db8::1/32", id="ipv6-host-bits-set"),
        pytest.param("203.0.113.0/33", id="ipv4-prefix-too-long"),
        pytest.param("2001:db8::/129", id="ipv6-prefix-too-long"),
        pytest.param("203.0.113.0/", id="empty-prefix"),
        pytest.param("203.0.113.0/-1", id="negative-prefix"),
        pytest.param("203.0.113.*", id="glob"),
        pytest.param("203.0.113.0-203.0.113.9", id="range"),
        pytest.param("", id="empty"),
        pytest.param("office", id="word"),
    ],
)
def test_parse_allowlist_refuses_bad_entries(entry: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_allowlist(["10.0.0.0/8", entry])
    assert caught.value.field == "ip_allowlist"


@pytest.mark.parametrize("entry", [None, 42, ("10.0.0.0", 8)])
def test_parse_allowlist_refuses_non_strings(entry: object) -> None:
    with pytest.raises(InvalidInput):
        parse_allowlist([entry])  # type: ignore[list-item]


def test_parse_allowlist_accepts_the_maximum_size() -> None:
    entries = [f"10.0.{n}.0/24" for n in range(MAX_ALLOWLIST)]
    assert len(parse_allowlist(entries)) == MAX_ALLOWLIST


def test_parse_allowlist_refuses_more_than_the_maximum_size() -> None:
    entries = [f"10.0.{n}.0/24" for n in range(MAX_ALLOWLIST + 1)]
    with pytest.raises(InvalidInput, match=str(MAX_ALLOWLIST)) as caught:
        parse_allowlist(entries)
    assert caught.value.field == "ip_allowlist"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("::ffff:203.0.113.7", IPv4Network("203.0.113.7/32")),
        ("::ffff:203.0.113.7/128", IPv4Network("203.0.113.7/32")),
        ("::ffff:203.0.113.0/120", IPv4Network("203.0.113.0/24")),
        ("::ffff:0.0.0.0/96", IPv4Network("0.0.0.0/0")),
    ],
)
def test_parse_allowlist_ipv4_mapped_entry_becomes_ipv4(entry: str, expected: IPv4Network) -> None:
    # Client addresses are normalised to IPv4 by parse_ip, so the allowlist must be too,
    # or an IPv4-mapped entry could never match anyone.
    assert parse_allowlist([entry]) == (expected,)


def test_ipv4_mapped_entry_and_its_ipv4_form_are_one_network() -> None:
    assert parse_allowlist(["::ffff:10.0.0.0/104", "10.0.0.0/8"]) == (IPv4Network("10.0.0.0/8"),)


def test_parse_allowlist_ipv4_mapped_entry_with_host_bits_is_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_allowlist(["::ffff:203.0.113.7/120"])


def test_parse_allowlist_keeps_ipv6_networks_wider_than_the_mapped_range() -> None:
    assert parse_allowlist(["::/0"]) == (IPv6Network("::/0"),)


def test_parse_allowlist_error_names_the_entry() -> None:
    with pytest.raises(InvalidInput, match=re.escape("'10.0.0.1/8'")):
        parse_allowlist(["10.0.0.1/8"])


@given(st.lists(st.text(max_size=30), max_size=5))
@settings(max_examples=100)
def test_parse_allowlist_arbitrary_text_raises_only_invalid_input(entries: list[str]) -> None:
    with contextlib.suppress(InvalidInput):
        parse_allowlist(entries)


# --- allowed -----------------------------------------------------------------------------


OFFICE = parse_allowlist(["203.0.113.0/24", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("address", "allowlist", "expected"),
    [
        pytest.param(None, (), True, id="no-allowlist-unknown-ip"),
        pytest.param(parse_ip("198.51.100.1"), (), True, id="no-allowlist-any-ip"),
        pytest.param(None, OFFICE, False, id="allowlist-unknown-ip"),
        pytest.param(parse_ip("203.0.113.0"), OFFICE, True, id="first-address"),
        pytest.param(parse_ip("203.0.113.255"), OFFICE, True, id="last-address"),
        pytest.param(parse_ip("203.0.114.0"), OFFICE, False, id="just-outside"),
        pytest.param(parse_ip("2001:db8:ffff::1"), OFFICE, True, id="ipv6-inside"),
        pytest.param(parse_ip("2001:db9::1"), OFFICE, False, id="ipv6-outside"),
        pytest.param(parse_ip("::ffff:203.0.113.9"), OFFICE, True, id="ipv4-mapped-inside"),
        pytest.param(
            parse_ip("198.51.100.1"), parse_allowlist(["2001:db8::/32"]), False, id="family-v4"
        ),
        pytest.param(
            parse_ip("2001:db8::1"), parse_allowlist(["0.0.0.0/0"]), False, id="family-v6"
        ),
        pytest.param(
            parse_ip("203.0.113.7"),
            parse_allowlist(["::ffff:203.0.113.0/120"]),
            True,
            id="ipv4-inside-ipv4-mapped-entry",
        ),
        pytest.param(
            parse_ip("::ffff:203.0.113.7"),
            parse_allowlist(["::ffff:203.0.113.7"]),
            True,
            id="ipv4-mapped-inside-ipv4-mapped-entry",
        ),
    ],
)
def test_allowed(
    address: IPv4Address | IPv6Address | None,
    allowlist: tuple[IPv4Network | IPv6Network, ...],
    expected: bool,
) -> None:
    assert allowed(address, allowlist) is expected


@given(st.ip_addresses(v=4))
@settings(max_examples=50)
def test_everything_v4_is_inside_slash_zero(address: IPv4Address) -> None:
    assert allowed(address, parse_allowlist(["0.0.0.0/0"]))


def test_if_allowlist_is_one_string_then_invalid() -> None:
    with pytest.raises(InvalidInput):
        parse_allowlist("10.0.0.0/8")
