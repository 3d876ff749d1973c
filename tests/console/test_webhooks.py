"""The console's Webhooks pages over HTTP: add an endpoint (the secret once), the
delivery log, a delivery's attempts, replay, and what a member or a bad URL gets."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplane.config import Settings
from keyplane.service.services import Services
from tests.console.conftest import Browser
from tests.webhook_receiver import Receiver, running_receiver


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        outbound_allow_networks=(ipaddress.IPv4Network("127.0.0.1/32"),),
        webhook_workers=0,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def add_endpoint(owner: Browser, receiver: Receiver, *events: str) -> tuple[str, str]:
    answer = owner.post(
        "/console/webhooks",
        {"url": receiver.url, "description": "billing", "event_types": list(events)},
        token_from="/console/webhooks",
    )
    assert answer.status_code == 201, answer.text
    secret = re.search(r'value="(whsec_[^"]+)"', answer.text)
    endpoint = re.search(r"/console/webhooks/(whe_\w+)", answer.text)
    assert secret
    assert endpoint
    receiver.secrets.append(secret.group(1))
    return endpoint.group(1), secret.group(1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_owner_adds_an_endpoint_sees_the_log_and_replays(
    owner: Browser, services: Services, receiver: Receiver
) -> None:
    page = owner.get("/console/webhooks")
    assert page.status_code == 200
    assert 'aria-current="page">Webhooks' in page.text
    assert '<label for="webhook-url">URL</label>' in page.text
    endpoint_id, secret = add_endpoint(owner, receiver, "key.revoked", "webhook.test")
    detail = owner.get(f"/console/webhooks/{endpoint_id}")
    assert detail.status_code == 200
    assert secret not in detail.text  # shown once
    assert secret not in owner.get("/console/webhooks").text
    sent = owner.post(
        f"/console/webhooks/{endpoint_id}/test", {}, token_from=f"/console/webhooks/{endpoint_id}"
    )
    assert sent.status_code == 303
    services.deliveries.run_once()
    assert receiver.wait_for(1)[0].verified_by == [0]
    log = owner.get(f"/console/webhooks/{endpoint_id}").text
    assert "webhook.test" in log
    assert "delivered" in log
    delivery_id = re.search(r"/console/webhook-deliveries/(whd_\w+)", log)
    assert delivery_id
    shown = owner.get(f"/console/webhook-deliveries/{delivery_id.group(1)}")
    assert shown.status_code == 200
    assert "204" in shown.text
    replayed = owner.post(
        f"/console/webhook-deliveries/{delivery_id.group(1)}/replay",
        {},
        token_from=f"/console/webhooks/{endpoint_id}",
    )
    assert replayed.status_code == 303
    services.deliveries.run_once()
    second = receiver.wait_for(2)[1]
    assert second.verified_by == [0]
    assert "replay 1" in owner.get(f"/console/webhooks/{endpoint_id}").text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bad_url_is_shown_on_the_form_and_creates_nothing(owner: Browser) -> None:
    answer = owner.post(
        "/console/webhooks",
        {"url": "http://169.254.169.254/latest", "event_types": ["key.revoked"]},
        token_from="/console/webhooks",
    )
    assert answer.status_code == 422
    assert "link-local" in answer.text
    assert "No endpoints yet." in answer.text
    assert 'value="key.revoked" checked' in answer.text
