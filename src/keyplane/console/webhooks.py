"""The Webhooks pages: endpoints (add, edit, enable or disable, rotate the secret,
send a test, delete), the delivery log and a delivery's attempts, and replay.

For owners and admins only (the service refuses members). The secret is shown on
the answer that made it and never again, like a key. Creating an endpoint,
changing its URL, rotating and deleting need a recent sign-in: the service raises
``ReauthenticationRequired`` and the console sends the person to ``/console/sudo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from keyplane.console.web import CSRFVisitorDep, VisitorDep, redirect, render
from keyplane.core.errors import InvalidInput, StateConflict
from keyplane.core.events import EVENT_TYPES
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.access import require_manager

router = APIRouter()

#: Overlaps a person can pick when rotating (seconds, label).
OVERLAPS: Final = (
    (0, "none: the old secret stops now"),
    (3600, "1 hour"),
    (86400, "24 hours"),
    (7 * 86400, "7 days"),
)


def event_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    """The catalogue grouped by the part before the dot, for the checkboxes."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, event in EVENT_TYPES.items():
        groups.setdefault(name.split(".", 1)[0], []).append((name, event.description))
    return list(groups.items())


def _list_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    *,
    status_code: int = 200,
    **extra: object,
) -> Response:
    require_manager(visitor.caller, "manage webhooks")
    page = services.webhooks.list_endpoints(visitor.caller, limit=200)
    return render(
        request,
        "webhooks.html",
        {
            "section": "webhooks",
            "endpoints": page.items,
            "groups": event_groups(),
            "form": extra.pop("form", {"url": "", "description": "", "event_types": []}),
            **extra,
        },
        status_code=status_code,
    )


@router.get("/webhooks")
def webhooks_page(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    return _list_page(request, services, visitor)


@router.post("/webhooks")
def create_webhook(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    url: Annotated[str, Form(max_length=2000)] = "",
    description: Annotated[str, Form(max_length=400)] = "",
    event_types: Annotated[list[str] | None, Form()] = None,
) -> Response:
    chosen = _chosen(event_types)
    try:
        created = services.webhooks.create_endpoint(
            visitor.caller, url=url, description=description, event_types=chosen
        )
    except InvalidInput as error:
        form = {"url": url, "description": description, "event_types": chosen}
        return _list_page(request, services, visitor, status_code=422, error=str(error), form=form)
    except StateConflict as error:
        return _list_page(request, services, visitor, status_code=409, error=str(error))
    return render(
        request,
        "webhook_secret.html",
        {
            "section": "webhooks",
            "endpoint": created.endpoint,
            "secret": created.secret,
            "title": "Endpoint added",
        },
        status_code=201,
    )


def _endpoint_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    endpoint_id: str,
    *,
    cursor: str | None = None,
    status_code: int = 200,
    **extra: object,
) -> Response:
    endpoint = services.webhooks.get_endpoint(visitor.caller, endpoint_id)
    deliveries = services.webhooks.list_deliveries(visitor.caller, endpoint_id, cursor=cursor)
    return render(
        request,
        "webhook_detail.html",
        {
            "section": "webhooks",
            "endpoint": endpoint,
            "deliveries": deliveries.items,
            "next_cursor": deliveries.next_cursor,
            "groups": event_groups(),
            "overlaps": OVERLAPS,
            **extra,
        },
        status_code=status_code,
    )


@router.get("/webhooks/{endpoint_id}")
def webhook_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    endpoint_id: str,
    cursor: str | None = Query(None, max_length=64),
) -> Response:
    return _endpoint_page(request, services, visitor, endpoint_id, cursor=cursor)


@router.post("/webhooks/{endpoint_id}")
def update_webhook(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    endpoint_id: str,
    url: Annotated[str, Form(max_length=2000)] = "",
    description: Annotated[str, Form(max_length=400)] = "",
    event_types: Annotated[list[str] | None, Form()] = None,
) -> Response:
    try:
        services.webhooks.update_endpoint(
            visitor.caller,
            endpoint_id,
            url=url,
            description=description,
            event_types=_chosen(event_types),
        )
    except InvalidInput as error:
        return _endpoint_page(
            request, services, visitor, endpoint_id, status_code=422, error=str(error)
        )
    return redirect(f"/webhooks/{endpoint_id}", notice="webhook-saved")


@router.post("/webhooks/{endpoint_id}/enable")
def enable_webhook(services: ServicesDep, visitor: CSRFVisitorDep, endpoint_id: str) -> Response:
    services.webhooks.update_endpoint(visitor.caller, endpoint_id, enabled=True)
    return redirect(f"/webhooks/{endpoint_id}", notice="webhook-enabled")


@router.post("/webhooks/{endpoint_id}/disable")
def disable_webhook(services: ServicesDep, visitor: CSRFVisitorDep, endpoint_id: str) -> Response:
    services.webhooks.update_endpoint(visitor.caller, endpoint_id, enabled=False)
    return redirect(f"/webhooks/{endpoint_id}", notice="webhook-disabled")


@router.post("/webhooks/{endpoint_id}/rotate")
def rotate_webhook(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    endpoint_id: str,
    overlap: Annotated[int, Form(ge=0, le=7 * 86400)] = 86400,
) -> Response:
    rotated = services.webhooks.rotate_secret(
        visitor.caller, endpoint_id, overlap=timedelta(seconds=overlap)
    )
    return render(
        request,
        "webhook_secret.html",
        {
            "section": "webhooks",
            "endpoint": rotated.endpoint,
            "secret": rotated.secret,
            "title": "Secret rotated",
        },
    )


@router.post("/webhooks/{endpoint_id}/test")
def test_webhook(services: ServicesDep, visitor: CSRFVisitorDep, endpoint_id: str) -> Response:
    services.webhooks.send_test(visitor.caller, endpoint_id)
    return redirect(f"/webhooks/{endpoint_id}", notice="webhook-test-sent")


@router.post("/webhooks/{endpoint_id}/delete")
def delete_webhook(services: ServicesDep, visitor: CSRFVisitorDep, endpoint_id: str) -> Response:
    services.webhooks.delete_endpoint(visitor.caller, endpoint_id)
    return redirect("/webhooks", notice="webhook-deleted")


@router.get("/webhook-deliveries/{delivery_id}")
def delivery_page(
    request: Request, services: ServicesDep, visitor: VisitorDep, delivery_id: str
) -> Response:
    detail = services.webhooks.get_delivery(visitor.caller, delivery_id)
    endpoint = services.webhooks.get_endpoint(visitor.caller, detail.delivery.endpoint_id)
    return render(
        request,
        "webhook_delivery.html",
        {"section": "webhooks", "detail": detail, "endpoint": endpoint},
    )


@router.post("/webhook-deliveries/{delivery_id}/replay")
def replay_delivery(services: ServicesDep, visitor: CSRFVisitorDep, delivery_id: str) -> Response:
    replayed = services.webhooks.replay(visitor.caller, delivery_id)
    return redirect(f"/webhooks/{replayed.endpoint_id}", notice="webhook-replayed")


def _chosen(event_types: Sequence[str] | None) -> list[str]:
    return [name for name in event_types or () if name]
