"""Webhooks end to end against a real receiver (tests/webhook_receiver.py) that checks
every request's signature with ``standardwebhooks``: fan-out, filters, retries,
receivers that hang, drip, redirect, reset or answer too much, secret rotation,
replay, auto-disable, refused addresses and DNS rebinding, and two instances on
one database delivering each event exactly once."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from keyplane.config import Settings
from keyplane.core.errors import InvalidInput, ObjectNotFound
from keyplane.service.events.outbound import OutboundRefused
from keyplane.service.events.webhooks import CreatedWebhook
from keyplane.service.records import Actor, Caller
from keyplane.service.services import Services
from keyplane.storage.models import Event, WebhookDelivery, WebhookSecret
from tests.support import Clock, Tenant
from tests.webhook_receiver import Receiver, running_receiver

LOOPBACK = (ipaddress.IPv4Network("127.0.0.1/32"),)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        outbound_allow_networks=LOOPBACK,
        webhook_workers=2,
        webhook_disable_after_failures=3,
        webhook_disable_after=timedelta(minutes=5),
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def caller(services: Services, tenant: Tenant) -> Caller:
    while services.dispatcher.run_once():  # the bootstrap's events, before any endpoint
        pass
    return Caller(tenant.organization_id, ("*",), Actor(f"key:{tenant.key_id}"))


def add_endpoint(
    services: Services, caller: Caller, receiver: Receiver, **options: Any
) -> CreatedWebhook:
    created = services.webhooks.create_endpoint(caller, url=receiver.url, **options)
    receiver.secrets.append(created.secret)
    return created


def revoke_new_key(services: Services, caller: Caller, tenant: Tenant) -> str:
    key = services.keys.create(caller, tenant.project_id, name="to revoke")
    services.keys.revoke(caller, key.record.id)
    return key.record.id


def pump(services: Services) -> int:
    """Dispatch what is waiting and attempt what is due, in this thread."""
    while services.dispatcher.run_once():
        pass
    return services.deliveries.run_once()


def deliveries(services: Services) -> list[WebhookDelivery]:
    with services.database.read() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.pk)))


def test_a_revoked_key_is_delivered_signed_to_the_endpoint(
    services: Services, caller: Caller, tenant: Tenant, receiver: Receiver
) -> None:
    created = add_endpoint(services, caller, receiver, event_types=["key.revoked"])
    assert created.secret.startswith("whsec_")
    assert created.secret not in repr(created)
    key_id = revoke_new_key(services, caller, tenant)
    pump(services)
    (got,) = receiver.wait_for(1)
    assert got.verified_by == [0]
    payload = receiver.verify(created.secret, got)
    assert payload["type"] == "key.revoked"
    assert payload["data"]["key"]["id"] == key_id
    assert payload["data"]["key"]["status"] == "revoked"
    assert got.headers["webhook-id"].startswith("msg_")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("Keyplane-Webhooks/")
    (delivery,) = deliveries(services)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)
    detail = services.webhooks.get_delivery(caller, delivery.id)
    assert detail.attempts[0].status_code == 204
    assert detail.payload["type"] == "key.revoked"


def test_the_event_filter_decides_which_endpoints_receive_an_event(
    services: Services, caller: Caller, tenant: Tenant, receiver: Receiver
) -> None:
    add_endpoint(services, caller, receiver, event_types=["key.created"])
    wildcard = add_endpoint(services, caller, receiver, event_types=["key.*"])
    everything = add_endpoint(services, caller, receiver)
    revoke_new_key(services, caller, tenant)
    pump(services)
    by_endpoint: dict[str, list[str]] = {}
    with services.database.read() as session:
        for delivery, event_type in session.execute(
            select(WebhookDelivery, Event.type).join(Event, Event.id == WebhookDelivery.event_id)
        ):
            by_endpoint.setdefault(delivery.endpoint_id, []).append(event_type)
    assert sorted(by_endpoint[wildcard.endpoint.id]) == ["key.created", "key.revoked"]
    assert sorted(by_endpoint[everything.endpoint.id]) == ["key.created", "key.revoked"]
    assert all(item.verified_by for item in receiver.wait_for(5))


def test_an_endpoint_of_another_organization_receives_nothing_and_is_not_found(
    services: Services, caller: Caller, tenant: Tenant, other_tenant: Tenant, receiver: Receiver
) -> None:
    other = Caller(other_tenant.organization_id, ("*",), Actor("key:other"))
    pump(services)  # the other organization's bootstrap events
    theirs = add_endpoint(services, other, receiver)
    revoke_new_key(services, caller, tenant)
    pump(services)
    assert receiver.received == []
    with pytest.raises(ObjectNotFound):
        services.webhooks.get_endpoint(caller, theirs.endpoint.id)
    with pytest.raises(ObjectNotFound):
        services.webhooks.delete_endpoint(caller, theirs.endpoint.id)


def test_a_500_is_retried_with_backoff_until_it_succeeds(
    services: Services, caller: Caller, tenant: Tenant, receiver: Receiver, clock: Clock
) -> None:
    add_endpoint(services, caller, receiver)
    receiver.behave("status:500")
    services.webhooks.send_test(caller, services.webhooks.list_endpoints(caller).items[0].id)
    assert pump(services) == 1
    (delivery,) = deliveries(services)
    assert (delivery.status, delivery.last_status_code) == ("pending", 500)
    assert delivery.next_attempt_at == clock.now + timedelta(seconds=30)
    assert pump(services) == 0  # not due yet
    clock.advance(timedelta(seconds=31))
    assert pump(services) == 1
    (delivery,) = deliveries(services)
    assert delivery.next_attempt_at == clock.now + timedelta(seconds=60)
    receiver.behave("ok")
    clock.advance(timedelta(seconds=61))
    assert pump(services) == 1
    (delivery,) = deliveries(services)
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    got = receiver.wait_for(3)
    assert len({item.headers["webhook-id"] for item in got}) == 1  # one message, three tries
    detail = services.webhooks.get_delivery(caller, delivery.id)
    assert [a.status_code for a in detail.attempts] == [204, 500, 500]
    assert detail.attempts[1].response_excerpt is not None
    assert len(detail.attempts[1].response_excerpt.encode()) <= 1024


def test_retries_stop_a_day_after_the_delivery_was_made(
    services: Services,
    caller: Caller,
    receiver: Receiver,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = add_endpoint(services, caller, receiver).endpoint
    monkeypatch.setattr(services.deliveries, "_disable_after_failures", 1000)
    receiver.behave("status:503")
    services.webhooks.send_test(caller, endpoint.id)
    waits = []
    for _ in range(40):
        if pump(services) == 0:
            break
        (delivery,) = deliveries(services)
        if delivery.status != "pending":
            break
        waits.append(delivery.next_attempt_at - clock.now)
        clock.advance(delivery.next_attempt_at - clock.now)
    (delivery,) = deliveries(services)
    assert delivery.status == "failed"
    assert waits[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert max(waits) == timedelta(hours=2)


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        pytest.param("redirect", "redirects are not followed", id="redirect"),
        pytest.param("reset", "", id="connection-reset"),
    ],
)
def test_a_receiver_that_redirects_or_resets_is_a_failed_attempt(
    services: Services, caller: Caller, receiver: Receiver, mode: str, error: str
) -> None:
    endpoint = add_endpoint(services, caller, receiver).endpoint
    receiver.behave(mode)
    services.webhooks.send_test(caller, endpoint.id)
    pump(services)
    (delivery,) = deliveries(services)
    assert delivery.status == "pending"
    assert delivery.last_error
    assert error in delivery.last_error
    assert len(receiver.received) == 1  # the redirect's target was never asked


def test_a_huge_answer_is_cut_and_kept_as_a_1_kib_excerpt(
    services: Services, caller: Caller, receiver: Receiver
) -> None:
    endpoint = add_endpoint(services, caller, receiver).endpoint
    receiver.behave("huge")
    services.webhooks.send_test(caller, endpoint.id)
    started = time.monotonic()
    pump(services)
    assert time.monotonic() - started < 5
    (delivery,) = deliveries(services)
    assert delivery.status == "delivered"
    (attempt,) = services.webhooks.get_delivery(caller, delivery.id).attempts
    assert attempt.response_excerpt == "x" * 1024


def test_a_hanging_or_dripping_receiver_is_cut_at_the_deadline_and_slows_no_key_check(
    services: Services, caller: Caller, tenant: Tenant, receiver: Receiver
) -> None:
    hang = add_endpoint(services, caller, receiver, event_types=["key.expired"]).endpoint
    services.webhooks.send_test(caller, hang.id)
    receiver.behave("hang")
    services.deliveries.start()
    services.dispatcher.start()
    try:
        receiver.wait_for(1)
        receiver.behave("drip")
        drip = services.webhooks.send_test(caller, hang.id)
        receiver.wait_for(2)
        # Meanwhile keys are checked and revoked at full speed.
        checks = []
        for _ in range(20):
            started = time.monotonic()
            assert services.verifier.verify(tenant.key).valid
            checks.append(time.monotonic() - started)
        started = time.monotonic()
        revoke_new_key(services, caller, tenant)
        assert time.monotonic() - started < 1.0
        assert max(checks) < 0.5
        deadline = time.monotonic() + 20
        tests = {drip.id}
        while time.monotonic() < deadline:
            attempted = [d for d in deliveries(services) if d.attempts]
            if len(attempted) >= 2 and tests & {d.id for d in attempted}:
                break
            time.sleep(0.2)
    finally:
        services.deliveries.stop()
        services.dispatcher.stop()
    first, second = deliveries(services)[:2]
    for delivery in (first, second):
        assert delivery.last_error == "no complete answer within 10 s"
    for detail in (services.webhooks.get_delivery(caller, d.id) for d in (first, second)):
        assert 9_000 <= detail.attempts[0].latency_ms <= 12_000


def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(
    services: Services, caller: Caller, receiver: Receiver, clock: Clock
) -> None:
    created = add_endpoint(services, caller, receiver)
    rotated = services.webhooks.rotate_secret(
        caller, created.endpoint.id, overlap=timedelta(hours=1)
    )
    receiver.secrets.append(rotated.secret)
    assert rotated.secret != created.secret
    assert rotated.endpoint.previous_secret_expires_at == clock.now + timedelta(hours=1)
    services.webhooks.send_test(caller, created.endpoint.id)
    pump(services)
    (during,) = receiver.wait_for(1)
    assert during.verified_by == [0, 1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    clock.advance(timedelta(hours=1, seconds=1))
    services.webhooks.send_test(caller, created.endpoint.id)
    pump(services)
    after = receiver.wait_for(2)[1]
    assert after.verified_by == [1]
    assert (
        services.webhooks.get_endpoint(caller, created.endpoint.id).previous_secret_expires_at
        is None
    )
    with pytest.raises(InvalidInput):
        services.webhooks.rotate_secret(caller, created.endpoint.id, overlap=timedelta(days=8))


def test_secrets_are_sealed_in_the_database(
    services: Services, caller: Caller, receiver: Receiver
) -> None:
    created = add_endpoint(services, caller, receiver)
    with services.database.read() as session:
        stored = session.scalars(select(WebhookSecret.secret)).all()
    assert stored
    assert all(created.secret not in value for value in stored)
    assert all(created.secret[6:] not in value for value in stored)


def test_a_replay_sends_the_same_message_again_as_a_new_delivery(
    services: Services, caller: Caller, tenant: Tenant, receiver: Receiver
) -> None:
    add_endpoint(services, caller, receiver, event_types=["key.revoked"])
    revoke_new_key(services, caller, tenant)
    pump(services)
    (first,) = deliveries(services)
    replayed = services.webhooks.replay(caller, first.id)
    again = services.webhooks.replay(caller, first.id)
    assert (replayed.replay, again.replay, replayed.status) == (1, 2, "pending")
    pump(services)
    got = receiver.wait_for(3)
    assert len({item.headers["webhook-id"] for item in got}) == 1
    assert all(item.verified_by == [0] for item in got)
    page = services.webhooks.list_deliveries(caller, first.endpoint_id)
    assert [d.replay for d in page.items] == [2, 1, 0]
    assert all(d.status == "delivered" for d in page.items)


def test_an_endpoint_that_keeps_failing_is_disabled_and_the_event_is_raised(
    services: Services, caller: Caller, receiver: Receiver, clock: Clock
) -> None:
    failing = add_endpoint(services, caller, receiver).endpoint
    watcher = add_endpoint(
        services, caller, receiver, event_types=["webhook.endpoint_disabled"]
    ).endpoint
    receiver.behave("status:500")
    for _ in range(3):
        services.webhooks.send_test(caller, failing.id)
    pump(services)  # three failures in a row, but all within the first minutes
    assert services.webhooks.get_endpoint(caller, failing.id).enabled
    clock.advance(timedelta(minutes=6))
    services.webhooks.send_test(caller, failing.id)
    receiver.behave("status:500")
    pump(services)
    endpoint = services.webhooks.get_endpoint(caller, failing.id)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")
    assert all(
        d.status in ("cancelled", "delivered")
        for d in deliveries(services)
        if d.endpoint_id == failing.id
    )
    with services.database.read() as session:
        (event,) = session.scalars(select(Event).where(Event.type == "webhook.endpoint_disabled"))
        assert event.data["webhook"]["id"] == failing.id
    receiver.behave("ok")
    pump(services)
    to_watcher = [d for d in deliveries(services) if d.endpoint_id == watcher.id]
    assert [d.status for d in to_watcher] == ["delivered"]
    assert not [
        d for d in deliveries(services) if d.endpoint_id == failing.id and d.event_id == event.id
    ]
    enabled = services.webhooks.update_endpoint(caller, failing.id, enabled=True)
    assert (enabled.enabled, enabled.consecutive_failures, enabled.disabled_reason) == (
        True,
        0,
        None,
    )


REFUSED = [
    "http://127.0.0.1:9/hook",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00::1]/",
    "http://[fd00:ec2::254]/",
    "http://100.64.0.1/",
    "http://2130706433/",
    "http://017700000001/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://127.1/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://evil@127.0.0.1/",
    "http://evil.example@10.0.0.1/",
    "http://[64:ff9b::a00:1]/",
    "http://[2002:a00:1::]/",
    "http://224.0.0.1/",
    "http://[fe80::1]/",
    "http://[::]/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http://example.com:0/",
    "http://example.com:99999/",
    "http:///nohost",
    "not a url",
    "http://does-not-exist.invalid/",
    "http://127\u30020\u30020\u30021/",
    "http://0x7f\uff0e1/",
    "http://\uff11\uff12\uff17.0.0.1/",
    "http://[::1%25lo]/",
    "http://%31%32%37.0.0.1/",
    "http://127.0.0.1#@example.com/",
    "http://example.com@127.0.0.1/",
    "http://127.0.0.1:80@example.com/",
]


@pytest.fixture
def strict_services(tmp_path: Path, database_url: str, clock: Clock) -> Iterator[Services]:
    """Services with the default outbound rule: nothing internal allowed."""
    opened = Services.open(Settings(data_dir=tmp_path, database_url=database_url), clock=clock)
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.parametrize("url", REFUSED)
def test_internal_or_malformed_urls_are_refused(strict_services: Services, url: str) -> None:
    tenant = Tenant.of(
        strict_services.bootstrap(
            organization_name="Acme", project_name="Default", owner_email="o@acme.test"
        )
    )
    caller = Caller(tenant.organization_id, ("*",), Actor("key:test"))
    with pytest.raises(OutboundRefused) as refused:
        strict_services.webhooks.create_endpoint(caller, url=url)
    assert refused.value.field == "url"
    assert strict_services.webhooks.list_endpoints(caller).items == ()


def test_the_allow_setting_opens_only_its_networks(services: Services, caller: Caller) -> None:
    for url in ("http://10.0.0.1/", "http://[::1]/", "http://169.254.169.254/"):
        with pytest.raises(OutboundRefused):
            services.webhooks.create_endpoint(caller, url=url)


def test_a_name_that_rebinds_to_an_internal_address_is_refused_at_delivery(
    services: Services,
    caller: Caller,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No DNS server is available to the tests, so this one case fakes the resolver:
    # the name answers 127.0.0.1 (allowed here) when the endpoint is made, then
    # 10.0.0.7 when the delivery is sent; Keyplane must look it up again and refuse.
    answers = {"rebind.test": "127.0.0.1"}
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return real(answers[host], *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    created = services.webhooks.create_endpoint(
        caller, url=f"http://rebind.test:{receiver.port}/hook"
    )
    receiver.secrets.append(created.secret)
    answers["rebind.test"] = "10.0.0.7"
    services.webhooks.send_test(caller, created.endpoint.id)
    pump(services)
    (delivery,) = deliveries(services)
    assert delivery.status == "pending"
    assert delivery.last_error
    assert delivery.last_error.startswith("refused:")
    assert "10.0.0.7" in delivery.last_error
    assert receiver.received == []
    answers["rebind.test"] = "127.0.0.1"  # back to the allowed answer: it goes through
    services.webhooks.replay(caller, delivery.id)
    pump(services)
    assert receiver.wait_for(1)[0].verified_by == [0]


def test_unknown_event_types_are_refused(
    services: Services, caller: Caller, receiver: Receiver
) -> None:
    with pytest.raises(InvalidInput) as refused:
        services.webhooks.create_endpoint(caller, url=receiver.url, event_types=["key.exploded"])
    assert refused.value.field == "event_types"
    with pytest.raises(InvalidInput):
        services.webhooks.create_endpoint(caller, url=receiver.url, event_types=["nothing.*"])


def test_two_instances_on_one_database_deliver_each_event_exactly_once(
    settings: Settings, services: Services, caller: Caller, tenant: Tenant, receiver: Receiver
) -> None:
    add_endpoint(services, caller, receiver, event_types=["key.revoked"])
    second = Services.open(settings)
    try:
        for instance in (services, second):
            instance.dispatcher.start()
            instance.deliveries.start()
        revoked = {revoke_new_key(services, caller, tenant) for _ in range(12)}
        got = receiver.wait_for(12, timeout=30)
        time.sleep(2.5)  # anything sent twice would have arrived by now
    finally:
        second.close()
        services.deliveries.stop()
        services.dispatcher.stop()
    assert len(receiver.received) == 12
    assert {item.payload["data"]["key"]["id"] for item in got} == revoked
    assert len({item.headers["webhook-id"] for item in got}) == 12
    assert all(item.verified_by == [0] for item in got)


def test_no_secret_reaches_the_logs(
    services: Services,
    caller: Caller,
    receiver: Receiver,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    created = add_endpoint(services, caller, receiver)
    rotated = services.webhooks.rotate_secret(caller, created.endpoint.id)
    receiver.behave("status:500")
    for _ in range(4):
        services.webhooks.send_test(caller, created.endpoint.id)
    clock.advance(timedelta(minutes=10))
    pump(services)
    assert "webhook delivery" in caplog.text  # the failures were logged ...
    for secret in (created.secret, rotated.secret):  # ... without a secret
        assert secret not in caplog.text
        assert secret.removeprefix("whsec_") not in caplog.text
        assert secret not in repr(services.webhooks.get_endpoint(caller, created.endpoint.id))


def test_dispatched_events_older_than_30_days_are_pruned(
    services: Services, caller: Caller, tenant: Tenant, receiver: Receiver, clock: Clock
) -> None:
    add_endpoint(services, caller, receiver)
    revoke_new_key(services, caller, tenant)
    pump(services)
    assert deliveries(services)
    clock.advance(timedelta(days=31))
    assert services.dispatcher.prune() >= 2
    assert deliveries(services) == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        pytest.param("127.0.0.1/32", True, id="one"),
        pytest.param("10.0.0.0/8, fd00::/8", True, id="two"),
        pytest.param("10.0.0.1/8", False, id="host-bits"),
        pytest.param("everything", False, id="garbage"),
    ],
)
def test_the_outbound_allow_setting_is_validated(value: str, ok: bool) -> None:
    from keyplane.config import ConfigError

    env = {"KEYPLANE_DATA_DIR": "/tmp/unused", "KEYPLANE_OUTBOUND_ALLOW_NETWORKS": value}
    if ok:
        assert Settings.from_env(env).outbound_allow_networks
    else:
        with pytest.raises(ConfigError, match="KEYPLANE_OUTBOUND_ALLOW_NETWORKS"):
            Settings.from_env(env)


def test_extra_fanout_runs_once_per_event_in_the_dispatch_transaction(
    settings: Settings, clock: Clock
) -> None:
    seen: list[str] = []
    failing = [True]

    def notifier(session: Any, event: Event) -> None:
        if failing[0]:
            raise RuntimeError("the notifier broke")
        seen.append(event.type)

    services = Services.open(settings, clock=clock, extra_fanout=[notifier])
    try:
        services.bootstrap(
            organization_name="Acme", project_name="Default", owner_email="o@acme.test"
        )
        with pytest.raises(RuntimeError):
            services.dispatcher.run_once()
        with services.database.read() as session:  # rolled back: nothing dispatched
            assert all(e.dispatched_at is None for e in session.scalars(select(Event)))
        failing[0] = False
        while services.dispatcher.run_once():
            pass
        assert services.dispatcher.run_once() == 0
    finally:
        services.close()
    assert seen.count("key.created") == 1  # the bootstrap's one key, once


def test_the_endpoint_limit_holds_when_creations_race(
    services: Services, caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from keyplane.core.errors import StateConflict
    from keyplane.service.events import webhooks

    monkeypatch.setattr(webhooks, "MAX_ENDPOINTS", 3)

    def create(number: int) -> bool:
        try:
            services.webhooks.create_endpoint(caller, url=f"http://127.0.0.1:9/{number}")
        except StateConflict:
            return False
        return True

    with ThreadPoolExecutor(max_workers=6) as pool:
        made = list(pool.map(create, range(6)))
    assert made.count(True) == 3
    assert len(services.webhooks.list_endpoints(caller).items) == 3
