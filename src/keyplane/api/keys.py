"""Keys: create, list, get, update, revoke, roll."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query

from keyplane.api.dependencies import require
from keyplane.api.schemas import (
    CreatedKeyOut,
    KeyCreate,
    KeyOut,
    KeyRoll,
    KeyUpdate,
    PageOut,
    Timestamp,
    UsageOut,
)
from keyplane.core import scopes
from keyplane.core.durations import parse_duration
from keyplane.core.errors import InvalidInput
from keyplane.core.grant import KeyStatus
from keyplane.http.services import ServicesDep
from keyplane.service.keys.lifecycle import KeyChanges
from keyplane.service.records import Caller

router = APIRouter(tags=["keys"])

StatusFilter = Literal["active", "disabled", "revoked", "expired", "all"]


@router.get(
    "/projects/{project_id}/keys", summary="List a project's keys", response_model=PageOut[KeyOut]
)
def list_keys(
    *,
    project_id: str,
    status: StatusFilter = Query("all"),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=64),
    caller: Annotated[Caller, require(scopes.KEYS_READ)],
    services: ServicesDep,
) -> PageOut[KeyOut]:
    page = services.keys.list(
        caller,
        project_id,
        status=None if status == "all" else KeyStatus(status),
        limit=limit,
        cursor=cursor,
    )
    return PageOut[KeyOut].model_validate(page)


@router.post(
    "/projects/{project_id}/keys",
    status_code=201,
    summary="Create a key (its value is in this response only)",
)
def create_key(
    *,
    project_id: str,
    body: KeyCreate,
    caller: Annotated[Caller, require(scopes.KEYS_WRITE)],
    services: ServicesDep,
) -> CreatedKeyOut:
    expires_at = body.expires_at
    if body.expires_in is not None:
        if expires_at is not None:
            raise InvalidInput("send expires_at or expires_in, not both", field="expires_in")
        expires_at = services.clock() + _positive_duration(body.expires_in)
    created = services.keys.create(
        caller,
        project_id,
        name=body.name,
        scopes=body.scopes,
        expires_at=expires_at,
        ip_allowlist=body.ip_allowlist,
        metadata=body.metadata,
        enabled=body.enabled,
        rate_limit=body.rate_limit.value() if body.rate_limit else None,
        quota=body.quota.value() if body.quota else None,
        canary=body.canary,
    )
    return CreatedKeyOut.of_created(created)


@router.get("/keys/{key_id}", summary="Get a key")
def get_key(
    *,
    key_id: str,
    caller: Annotated[Caller, require(scopes.KEYS_READ)],
    services: ServicesDep,
) -> KeyOut:
    return KeyOut.model_validate(services.keys.get(caller, key_id))


@router.patch(
    "/keys/{key_id}", summary="Change a key's name, scopes, expiry, metadata or enabled flag"
)
def update_key(
    *,
    key_id: str,
    body: KeyUpdate,
    caller: Annotated[Caller, require(scopes.KEYS_WRITE)],
    services: ServicesDep,
) -> KeyOut:
    sent = body.model_fields_set
    for field in ("name", "scopes", "metadata", "enabled", "ip_allowlist"):
        if field in sent and getattr(body, field) is None:
            raise InvalidInput(f"{field} cannot be null", field=field)
    values: dict[str, Any] = {field: getattr(body, field) for field in sent}
    for field in ("rate_limit", "quota"):
        if values.get(field) is not None:
            values[field] = values[field].value()
    changes = KeyChanges(**values)
    return KeyOut.model_validate(services.keys.update(caller, key_id, changes))


@router.delete("/keys/{key_id}", summary="Revoke a key (permanent; repeating it is harmless)")
def revoke_key(
    *,
    key_id: str,
    caller: Annotated[Caller, require(scopes.KEYS_WRITE)],
    services: ServicesDep,
) -> KeyOut:
    return KeyOut.model_validate(services.keys.revoke(caller, key_id))


@router.get(
    "/keys/{key_id}/usage",
    summary="A key's verifications per hour or day, by outcome",
    description=(
        "Counts are written behind the request path about once a second; buckets are "
        "UTC. `since` defaults to 30 days (day) or 48 hours (hour) ago."
    ),
)
def key_usage(
    *,
    key_id: str,
    interval: Literal["hour", "day"] = Query("day"),
    since: Timestamp | None = Query(None),
    until: Timestamp | None = Query(None),
    caller: Annotated[Caller, require(scopes.KEYS_READ)],
    services: ServicesDep,
) -> UsageOut:
    buckets = services.usage_history.buckets(
        caller, key_id, interval=interval, since=since, until=until
    )
    return UsageOut(key_id=key_id, interval=interval, buckets=buckets)


@router.post(
    "/keys/{key_id}/roll",
    status_code=201,
    summary="Replace a key with a new one; the old one works for the grace period",
)
def roll_key(
    *,
    key_id: str,
    body: KeyRoll | None = Body(None),
    caller: Annotated[Caller, require(scopes.KEYS_WRITE)],
    services: ServicesDep,
) -> CreatedKeyOut:
    grace = timedelta(seconds=(body or KeyRoll()).grace_period_seconds)
    return CreatedKeyOut.of_created(services.keys.roll(caller, key_id, grace=grace))


def _positive_duration(text: str) -> timedelta:
    try:
        duration = parse_duration(text)
    except InvalidInput as error:
        raise InvalidInput(str(error), field="expires_in") from None
    if duration <= timedelta(0):
        raise InvalidInput("expires_in must be longer than zero", field="expires_in")
    return duration
