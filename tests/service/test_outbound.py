"""The outbound rule on its own (service/events/outbound.py): what it refuses, that
it connects to the address it checked, and that its deadline holds however slowly
the other side answers."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from keyplane.service.events import outbound
from keyplane.service.events.outbound import (
    OutboundClient,
    OutboundRefused,
    check_and_resolve,
    refusal_reason,
)
from tests.webhook_receiver import Receiver, running_receiver

LOOPBACK = (ipaddress.IPv4Network("127.0.0.1/32"),)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        running.secrets.append("whsec_" + "QUJD" * 8)
        yield running


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
        ("2002:c0a8:0101::", "private"),
        ("100.100.100.100", "shared (carrier-grade NAT)"),
        ("198.18.0.1", "private"),
        ("240.0.0.1", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("fe80::1", "link-local (cloud metadata)"),
    ],
)
def test_internal_addresses_and_their_ipv6_forms_are_named(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "203.0.114.1"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_one_internal_answer_among_public_ones_refuses_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fake resolver (no DNS server here): a name with a public and a private answer.
    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(OutboundRefused, match=r"10\.1\.2\.3"):
        check_and_resolve("https://mixed.test/hook")


def test_the_allow_setting_opens_a_network_and_nothing_else() -> None:
    _, address = check_and_resolve("http://127.0.0.1:8080/", LOOPBACK)
    assert str(address) == "127.0.0.1"
    with pytest.raises(OutboundRefused):
        check_and_resolve("http://127.0.0.2:8080/", LOOPBACK)


def test_the_name_is_sent_as_host_while_the_checked_address_is_dialled(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "hooks.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    client = OutboundClient(LOOPBACK)
    result = client.post(f"http://hooks.test:{receiver.port}/hook", b"{}", {})
    assert result.status_code == 401  # unsigned: the receiver refuses it, but it got there
    assert receiver.received[0].headers["host"] == f"hooks.test:{receiver.port}"


def test_a_status_line_dripped_byte_by_byte_is_cut_at_the_deadline(receiver: Receiver) -> None:
    receiver.behave("drip-headers")
    client = OutboundClient(LOOPBACK, deadline=2.0)
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_drip",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(receiver.secrets[0]).sign("msg_drip", now, "{}"),
    }
    started = time.monotonic()
    result = client.post(receiver.url, b"{}", headers)
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed < 3.5
    assert result.error == "no complete answer within 2 s"
    assert not result.ok


def test_nothing_listening_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = OutboundClient(LOOPBACK).post(f"http://127.0.0.1:{port}/", b"{}", {})
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("could not connect")


def test_a_resolver_that_hangs_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake resolver (no DNS server here) that answers too late.
    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    monkeypatch.setattr(outbound, "RESOLVE_TIMEOUT", 0.2)
    started = time.monotonic()
    with pytest.raises(OutboundRefused, match="did not resolve within"):
        check_and_resolve("https://slow-dns.test/hook")
    assert time.monotonic() - started < 0.9
