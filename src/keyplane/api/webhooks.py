"""Webhook endpoints of the caller's organization, their delivery log and replays.

Reading needs ``webhooks:read``, changing ``webhooks:write``; a person (the console)
must also be an owner or an admin, and creating, changing the URL, rotating and
deleting need a recent sign-in (the service checks both).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from keyplane.api.dependencies import require
from keyplane.api.schemas import (
    CreatedWebhookOut,
    PageOut,
    WebhookCreate,
    WebhookDeliveryDetailOut,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookRotate,
    WebhookUpdate,
)
from keyplane.core import scopes
from keyplane.core.errors import InvalidInput
from keyplane.http.services import ServicesDep
from keyplane.service.records import Caller

router = APIRouter(tags=["webhooks"])

DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]


@router.get("/webhooks", summary="List webhook endpoints", response_model=PageOut[WebhookOut])
def list_webhooks(
    *,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=64),
    caller: Annotated[Caller, require(scopes.WEBHOOKS_READ)],
    services: ServicesDep,
) -> PageOut[WebhookOut]:
    page = services.webhooks.list_endpoints(caller, limit=limit, cursor=cursor)
    return PageOut[WebhookOut].model_validate(page)


@router.post(
    "/webhooks",
    status_code=201,
    summary="Add a webhook endpoint (its signing secret is in this answer only)",
)
def create_webhook(
    *,
    body: WebhookCreate,
    caller: Annotated[Caller, require(scopes.WEBHOOKS_WRITE)],
    services: ServicesDep,
) -> CreatedWebhookOut:
    created = services.webhooks.create_endpoint(
        caller, url=body.url, description=body.description, event_types=body.event_types
    )
    return CreatedWebhookOut.model_validate(created)


@router.get("/webhooks/{endpoint_id}", summary="Get a webhook endpoint")
def get_webhook(
    *,
    endpoint_id: str,
    caller: Annotated[Caller, require(scopes.WEBHOOKS_READ)],
    services: ServicesDep,
) -> WebhookOut:
    return WebhookOut.model_validate(services.webhooks.get_endpoint(caller, endpoint_id))


@router.patch("/webhooks/{endpoint_id}", summary="Change a webhook endpoint")
def update_webhook(
    *,
    endpoint_id: str,
    body: WebhookUpdate,
    caller: Annotated[Caller, require(scopes.WEBHOOKS_WRITE)],
    services: ServicesDep,
) -> WebhookOut:
    for field in body.model_fields_set:
        if getattr(body, field) is None:
            raise InvalidInput(f"{field} cannot be null", field=field)
    record = services.webhooks.update_endpoint(
        caller,
        endpoint_id,
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        enabled=body.enabled,
    )
    return WebhookOut.model_validate(record)


@router.delete(
    "/webhooks/{endpoint_id}",
    status_code=204,
    summary="Delete a webhook endpoint and its delivery log",
    response_class=Response,
)
def delete_webhook(
    *,
    endpoint_id: str,
    caller: Annotated[Caller, require(scopes.WEBHOOKS_WRITE)],
    services: ServicesDep,
) -> Response:
    services.webhooks.delete_endpoint(caller, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{endpoint_id}/rotate-secret",
    summary="Rotate the signing secret (the old one keeps signing for the overlap)",
)
def rotate_webhook_secret(
    *,
    endpoint_id: str,
    body: WebhookRotate | None = None,
    caller: Annotated[Caller, require(scopes.WEBHOOKS_WRITE)],
    services: ServicesDep,
) -> CreatedWebhookOut:
    overlap = timedelta(seconds=(body or WebhookRotate()).overlap_seconds)
    rotated = services.webhooks.rotate_secret(caller, endpoint_id, overlap=overlap)
    return CreatedWebhookOut.model_validate(rotated)


@router.post(
    "/webhooks/{endpoint_id}/test",
    status_code=202,
    summary="Send a webhook.test event to this endpoint only",
)
def test_webhook(
    *,
    endpoint_id: str,
    caller: Annotated[Caller, require(scopes.WEBHOOKS_WRITE)],
    services: ServicesDep,
) -> WebhookDeliveryOut:
    return WebhookDeliveryOut.model_validate(services.webhooks.send_test(caller, endpoint_id))


@router.get(
    "/webhooks/{endpoint_id}/deliveries",
    summary="The endpoint's deliveries, newest first",
    response_model=PageOut[WebhookDeliveryOut],
)
def list_webhook_deliveries(
    *,
    endpoint_id: str,
    status: DeliveryStatus | None = Query(None),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=64),
    caller: Annotated[Caller, require(scopes.WEBHOOKS_READ)],
    services: ServicesDep,
) -> PageOut[WebhookDeliveryOut]:
    page = services.webhooks.list_deliveries(
        caller, endpoint_id, status=status, limit=limit, cursor=cursor
    )
    return PageOut[WebhookDeliveryOut].model_validate(page)


@router.get("/webhook-deliveries/{delivery_id}", summary="A delivery with its attempts (the log)")
def get_webhook_delivery(
    *,
    delivery_id: str,
    caller: Annotated[Caller, require(scopes.WEBHOOKS_READ)],
    services: ServicesDep,
) -> WebhookDeliveryDetailOut:
    return WebhookDeliveryDetailOut.model_validate(
        services.webhooks.get_delivery(caller, delivery_id)
    )


@router.post(
    "/webhook-deliveries/{delivery_id}/replay",
    status_code=202,
    summary="Send a delivery's event again (a new delivery, due now)",
)
def replay_webhook_delivery(
    *,
    delivery_id: str,
    caller: Annotated[Caller, require(scopes.WEBHOOKS_WRITE)],
    services: ServicesDep,
) -> WebhookDeliveryOut:
    return WebhookDeliveryOut.model_validate(services.webhooks.replay(caller, delivery_id))
