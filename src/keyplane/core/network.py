"""IP addresses and CIDR allowlists."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final, TypeAlias

from keyplane.core.errors import InvalidInput

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ALLOWLIST: Final = 100


def parse_ip(text: str) -> IPAddress:
    """Parse one IP address; an IPv4-mapped IPv6 address becomes plain IPv4."""
    try:
        address = ipaddress.ip_address(text.strip())
    except (ValueError, AttributeError):
        raise InvalidInput(f"{text!r} is not an IP address", field="client_ip") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_allowlist(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDRs (or single addresses) into networks; host bits must be zero."""
    if isinstance(entries, str):
        raise InvalidInput(
            "the allowlist is a list of networks, not one string", field="ip_allowlist"
        )
    networks = []
    for entry in entries:
        try:
            networks.append(_unmap(ipaddress.ip_network(entry.strip(), strict=True)))
        except (ValueError, AttributeError):
            raise InvalidInput(
                f"{entry!r} is not a network: use CIDR notation such as 203.0.113.0/24",
                field="ip_allowlist",
            ) from None
    if len(networks) > MAX_ALLOWLIST:
        raise InvalidInput(
            f"an allowlist holds at most {MAX_ALLOWLIST} networks", field="ip_allowlist"
        )
    return tuple(dict.fromkeys(networks))


_IPV4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmap(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network as plain IPv4, as :func:`parse_ip` does for addresses."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        address = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
        return ipaddress.IPv4Network((address, network.prefixlen - 96))
    return network


def allowed(address: IPAddress | None, allowlist: tuple[IPNetwork, ...]) -> bool:
    """True if there is no allowlist, or ``address`` is inside one of its networks."""
    if not allowlist:
        return True
    if address is None:
        return False
    return any(address in network for network in allowlist)
