"""Hypothesis on the parsers this issue added or leans on (the core's own parsers
have theirs in tests/core and tests/http): CIDR membership against the standard
library, size limits on arbitrary chunkings, signature headers, leak tokens."""

from __future__ import annotations

import asyncio
import ipaddress
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from keyplane.core.errors import AuthenticationFailed, NotPermitted
from keyplane.core.network import allowed, parse_allowlist
from keyplane.http.size_limits import SizeLimitMiddleware, SizeLimits
from keyplane.service.keys.leaks import GitHubKeyring
from tests.security.github import GitHubSigner

networks = st.one_of(
    st.ip_addresses(v=4).flatmap(
        lambda a: st.integers(0, 32).map(lambda p: ipaddress.ip_network(f"{a}/{p}", strict=False))
    ),
    st.ip_addresses(v=6).flatmap(
        lambda a: st.integers(0, 128).map(lambda p: ipaddress.ip_network(f"{a}/{p}", strict=False))
    ),
)


@given(networks, st.ip_addresses())
@settings(max_examples=300)
def test_allowlist_membership_agrees_with_the_standard_library(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    allowlist = parse_allowlist([str(network)])
    # Keyplane reads an IPv4-mapped IPv6 network (::ffff:a.b.c.d/96+n) as the IPv4
    # network a.b.c.d/n, as it reads a mapped client address as IPv4.
    mapped = network.network_address.ipv4_mapped if network.version == 6 else None
    if mapped is not None and network.prefixlen >= 96:
        network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    expected = address.version == network.version and address in network
    assert allowed(address, allowlist) == expected


@given(networks)
@settings(max_examples=200)
def test_a_parsed_allowlist_round_trips_through_its_text(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> None:
    once = parse_allowlist([str(network)])
    assert parse_allowlist([str(item) for item in once]) == once


async def _echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(total).encode()})


def _run(limit: int, chunks: list[bytes], declared: bool) -> list[Message]:
    middleware = SizeLimitMiddleware(_echo_length, limits=lambda: SizeLimits(limit, 8192, None))
    headers = [(b"content-length", str(sum(map(len, chunks))).encode())] if declared else []
    incoming: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ] or [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(middleware(scope, receive, send))
    return sent


@given(
    st.integers(min_value=0, max_value=300),
    st.lists(st.binary(max_size=80), max_size=10),
    st.booleans(),
)
@settings(max_examples=300)
def test_a_body_is_refused_exactly_when_it_is_over_the_limit_however_it_is_chunked(
    limit: int, chunks: list[bytes], declared: bool
) -> None:
    sent = _run(limit, chunks, declared)
    total = sum(map(len, chunks))
    starts = [message for message in sent if message["type"] == "http.response.start"]
    assert len(starts) == 1  # exactly one answer, never two
    if total > limit:
        assert starts[0]["status"] == 413
        assert json.loads(sent[-1]["body"])["code"] == "BODY_TOO_LARGE"
    else:
        assert starts[0]["status"] == 200
        assert sent[-1]["body"] == str(total).encode()


KEYRING = GitHubKeyring.from_document(GitHubSigner.generate("known").document())


@given(st.none() | st.text(max_size=80), st.none() | st.text(max_size=200), st.binary(max_size=200))
@settings(max_examples=300)
def test_arbitrary_signature_headers_are_refused_with_401_or_403_only(
    identifier: str | None, signature: str | None, body: bytes
) -> None:
    try:
        KEYRING.verify(identifier, signature, body)
    except (AuthenticationFailed, NotPermitted):
        return
    raise AssertionError("an unsigned body was accepted")


@given(st.text(max_size=400))
@settings(max_examples=100)
def test_arbitrary_key_documents_are_a_value_error_or_a_keyring(document: str) -> None:
    try:
        keyring = GitHubKeyring.from_document(document)
    except ValueError:
        return
    assert isinstance(keyring.keys, dict)
