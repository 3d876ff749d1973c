"""Events (``/api/v1/events``, ``/api/v1/event-types``) and who still uses a key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from keyplane.api.dependencies import Authenticated, authenticate, require
from keyplane.api.schemas import PageOut
from keyplane.api.schemas.events import EventOut, EventTypeOut, KeyCallersOut
from keyplane.core import scopes
from keyplane.core.events import EVENT_TYPES
from keyplane.http.services import ServicesDep
from keyplane.service.records import Caller

router = APIRouter(tags=["events"])


@router.get(
    "/events",
    summary="List the organization's events, newest first (kept 30 days)",
    response_model=PageOut[EventOut],
)
def list_events(
    *,
    type: str | None = Query(None, max_length=60, description="e.g. key.revoked"),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=64),
    caller: Annotated[Caller, require(scopes.EVENTS_READ)],
    services: ServicesDep,
) -> PageOut[EventOut]:
    page = services.events.events(caller, event_type=type, limit=limit, cursor=cursor)
    return PageOut[EventOut](
        items=[EventOut.model_validate(event) for event in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/event-types", summary="Every event type, with what it means")
def list_event_types(
    auth: Annotated[Authenticated, Depends(authenticate)],
) -> list[EventTypeOut]:
    del auth  # any live key may read the catalogue
    return [EventTypeOut.model_validate(event) for event in EVENT_TYPES.values()]


@router.get(
    "/keys/{key_id}/callers",
    summary="Who still uses a key: its client IPs and user agents of the last days",
    description=(
        "Distinct client IPs and user agents that used the key, with a count and when "
        "last seen, most recent first; at most 100 of each are kept per key, none not "
        "seen for 30 days. Written behind the request path about once a second."
    ),
)
def key_callers(
    *,
    key_id: str,
    days: int = Query(30, ge=1, le=30),
    caller: Annotated[Caller, require(scopes.KEYS_READ)],
    services: ServicesDep,
) -> KeyCallersOut:
    return KeyCallersOut.model_validate(services.signals.callers(caller, key_id, days))
