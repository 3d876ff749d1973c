"""Webhooks: the bodies that create and change an endpoint, and the answers read
from the service's records (endpoints, deliveries, attempts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from keyplane.api.schemas.base import FromRecord, Strict

_URL = Field(
    min_length=1,
    max_length=2000,
    description=(
        "Where events are POSTed: http(s)://host/path. Loopback, private, link-local and "
        "other internal addresses are refused unless the server's "
        "KEYPLANE_OUTBOUND_ALLOW_NETWORKS allows them."
    ),
)
_EVENT_TYPES: list[str] = Field(
    default_factory=list,
    max_length=64,
    description=(
        "Event types sent to this endpoint (GET /api/v1/event-types); `key.*` stands for "
        "every key event. Empty: every type."
    ),
)


class WebhookCreate(Strict):
    url: str = _URL
    description: str = Field("", max_length=200, description="A note for people.")
    event_types: list[str] = _EVENT_TYPES


class WebhookUpdate(Strict):
    url: str | None = Field(None, min_length=1, max_length=2000)
    description: str | None = Field(None, max_length=200)
    event_types: list[str] | None = Field(None, max_length=64)
    enabled: bool | None = Field(
        None, description="false turns the endpoint off (pending deliveries are cancelled)."
    )


class WebhookRotate(Strict):
    overlap_seconds: int = Field(
        86400,
        ge=0,
        le=7 * 86400,
        description="How long the current secret keeps signing beside the new one.",
    )


class WebhookOut(FromRecord):
    id: str
    organization_id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: Literal["failing", "user"] | None = Field(
        description="Why it is off: its deliveries kept failing, or someone turned it off."
    )
    disabled_at: datetime | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    consecutive_failures: int
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the rotated-out secret still signs; null when one secret signs."
    )


class CreatedWebhookOut(FromRecord):
    endpoint: WebhookOut
    secret: str = Field(
        description="The signing secret (whsec_...): shown this once, store it now."
    )


class WebhookDeliveryOut(FromRecord):
    id: str
    endpoint_id: str
    event_id: str = Field(description="The event's id: the webhook-id header of every attempt.")
    event_type: str
    replay: int = Field(description="0 for the first delivery, N for the Nth manual replay.")
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending only).")
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None


class WebhookAttemptOut(FromRecord):
    attempted_at: datetime
    status_code: int | None = Field(description="null when no answer came.")
    latency_ms: int
    error: str | None
    response_excerpt: str | None = Field(description="The answer's first 1 KiB, as text.")


class WebhookDeliveryDetailOut(FromRecord):
    delivery: WebhookDeliveryOut
    attempts: list[WebhookAttemptOut] = Field(description="Newest first.")
    payload: dict[str, Any] = Field(description="The body each attempt sent.")
