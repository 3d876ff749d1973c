"""The client's IP address: the socket peer, or ``X-Forwarded-For`` behind trusted proxies only."""

from __future__ import annotations

from functools import lru_cache

from keyplane.core.errors import InvalidInput
from keyplane.core.network import IPAddress, IPNetwork, parse_ip


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted_proxies: tuple[IPNetwork, ...]
) -> IPAddress | None:
    """Walk ``X-Forwarded-For`` from the right while hops are trusted proxies.

    With no trusted proxies configured the header is ignored: anyone can send
    it, so believing it would let a caller choose its own IP for allowlists.
    """
    address = _parse(peer)
    if address is None or not trusted_proxies or not forwarded_for:
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",")][-32:]
    while address is not None and any(address in network for network in trusted_proxies) and hops:
        address = _parse(hops.pop())
    return address


def _parse(text: str | None) -> IPAddress | None:
    if not text:
        return None
    return _parse_cached(text) if len(text) <= 64 else None


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> IPAddress | None:
    """Parsing an address costs microseconds; a server sees the same few peers again
    and again (its proxies, its busiest clients). Bounded; addresses are immutable."""
    try:
        return parse_ip(text)
    except InvalidInput:
        return None
