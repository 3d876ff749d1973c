"""The client's IP: the socket peer, or X-Forwarded-For through trusted proxies only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.core.network import IPAddress, IPNetwork, parse_allowlist, parse_ip
from keyplane.http.client_ip import client_ip

PROXIES = parse_allowlist(["10.0.0.0/8", "fd00::/8"])
NO_PROXIES: tuple[IPNetwork, ...] = ()


def ip(text: str) -> IPAddress:
    return parse_ip(text)


# --- the socket peer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("203.0.113.7", ip("203.0.113.7")),
        ("2001:db8::1", ip("2001:db8::1")),
        ("::ffff:203.0.113.7", ip("203.0.113.7")),
    ],
)
def test_socket_peer_is_the_client_without_header(peer: str, expected: IPAddress) -> None:
    assert client_ip(peer, None, NO_PROXIES) == expected
    assert client_ip(peer, None, PROXIES) == expected
    assert client_ip(peer, "", PROXIES) == expected


@pytest.mark.parametrize("peer", [None, "", "testclient", "unix:/run/keyplane.sock", "garbage"])
def test_unknown_peer_gives_no_client_ip(peer: str | None) -> None:
    assert client_ip(peer, None, NO_PROXIES) is None
    assert client_ip(peer, "198.51.100.1", PROXIES) is None


# --- X-Forwarded-For without trusted proxies ---------------------------------------------


@pytest.mark.parametrize("peer", ["203.0.113.7", "10.0.0.1"])
def test_forwarded_for_is_ignored_without_trusted_proxies(peer: str) -> None:
    assert client_ip(peer, "198.51.100.1", NO_PROXIES) == ip(peer)
    assert client_ip(peer, "198.51.100.1, 10.0.0.2", NO_PROXIES) == ip(peer)


def test_forwarded_for_is_ignored_when_peer_is_not_a_trusted_proxy() -> None:
    # A client talking to us directly cannot choose its IP by sending the header.
    assert client_ip("203.0.113.7", "198.51.100.1", PROXIES) == ip("203.0.113.7")


# --- X-Forwarded-For through trusted proxies ---------------------------------------------


def test_forwarded_for_is_honoured_from_a_trusted_proxy() -> None:
    assert client_ip("10.0.0.1", "198.51.100.1", PROXIES) == ip("198.51.100.1")


def test_forwarded_for_is_walked_through_a_chain_of_trusted_proxies() -> None:
    assert client_ip("10.0.0.1", "198.51.100.1, 10.0.0.3, 10.0.0.2", PROXIES) == ip("198.51.100.1")


def test_walk_stops_at_the_first_untrusted_hop_from_the_right() -> None:
    # The leftmost entries were written by the client and are not believed.
    forwarded = "1.1.1.1, 8.8.8.8, 198.51.100.1, 10.0.0.2"
    assert client_ip("10.0.0.1", forwarded, PROXIES) == ip("198.51.100.1")


def test_spoofed_trusted_looking_entry_left_of_the_client_is_not_followed() -> None:
    forwarded = "10.9.9.9, 198.51.100.1"
    assert client_ip("10.0.0.1", forwarded, PROXIES) == ip("198.51.100.1")


def test_ipv6_proxies_and_clients() -> None:
    assert client_ip("fd00::1", "2001:db8::7, fd00::2", PROXIES) == ip("2001:db8::7")


def test_ipv4_mapped_peer_and_hops_are_normalised() -> None:
    assert client_ip("::ffff:10.0.0.1", "::ffff:198.51.100.1", PROXIES) == ip("198.51.100.1")


def test_ipv4_mapped_trusted_proxy_entry_matches_the_peer() -> None:
    proxies = parse_allowlist(["::ffff:10.0.0.0/104"])
    assert client_ip("10.0.0.1", "198.51.100.1", proxies) == ip("198.51.100.1")


def test_hops_are_stripped_of_whitespace() -> None:
    assert client_ip("10.0.0.1", "  198.51.100.1 ,\t10.0.0.2  ", PROXIES) == ip("198.51.100.1")


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    assert client_ip("10.0.0.1", "10.0.0.3, 10.0.0.2", PROXIES) == ip("10.0.0.3")


def test_long_chains_are_walked_at_most_32_hops() -> None:
    forwarded = ", ".join(["198.51.100.1"] + [f"10.0.0.{n}" for n in range(1, 41)])
    result = client_ip("10.0.0.254", forwarded, PROXIES)
    assert result is not None
    assert result in PROXIES[0]


@pytest.mark.parametrize(
    "forwarded",
    [
        pytest.param("garbage", id="word"),
        pytest.param("198.51.100.1, garbage", id="garbage-last"),
        pytest.param("198.51.100.1,", id="trailing-comma"),
        pytest.param("198.51.100.1:4711", id="with-port"),
        pytest.param("[2001:db8::1]", id="bracketed-ipv6"),
        pytest.param("unknown", id="rfc7239-unknown"),
        pytest.param('for="198.51.100.1"', id="forwarded-header-syntax"),
    ],
)
def test_unparseable_hop_gives_no_client_ip_rather_than_the_proxy(forwarded: str) -> None:
    # Failing closed: an allowlisted key is then refused, never granted by the proxy's address.
    assert client_ip("10.0.0.1", forwarded, PROXIES) is None


def test_garbage_left_of_the_client_is_never_reached() -> None:
    assert client_ip("10.0.0.1", "garbage, 198.51.100.1", PROXIES) == ip("198.51.100.1")


@given(peer=st.none() | st.text(max_size=50), forwarded=st.none() | st.text(max_size=200))
@settings(max_examples=100)
def test_garbage_never_raises(peer: str | None, forwarded: str | None) -> None:
    result = client_ip(peer, forwarded, PROXIES)
    assert result is None or isinstance(result, IPAddress)


@given(
    forwarded=st.lists(st.ip_addresses().map(str) | st.text(max_size=20), max_size=40).map(
        ", ".join
    )
)
@settings(max_examples=100)
def test_any_chain_from_a_trusted_proxy_never_raises(forwarded: str) -> None:
    result = client_ip("10.0.0.1", forwarded, PROXIES)
    assert result is None or isinstance(result, IPAddress)


@given(st.ip_addresses(), st.text(max_size=200))
@settings(max_examples=100)
def test_without_trusted_proxies_the_peer_is_always_the_client(
    peer: IPAddress, forwarded: str
) -> None:
    assert client_ip(str(peer), forwarded, NO_PROXIES) == parse_ip(str(peer))
