"""``GET /api/v1/audit-events``: the organization's audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from keyplane.api.dependencies import require
from keyplane.api.schemas import AuditEventOut, PageOut, Timestamp
from keyplane.core import scopes
from keyplane.http.services import ServicesDep
from keyplane.service.records import Caller

router = APIRouter(tags=["audit"])


@router.get(
    "/audit-events",
    summary="List audit events, newest first",
    response_model=PageOut[AuditEventOut],
)
def list_audit_events(
    *,
    action: str | None = Query(None, max_length=60, description="e.g. key.created, key.revoked"),
    key_id: str | None = Query(None, max_length=40, description="Events about this key"),
    actor: str | None = Query(None, max_length=80, description="e.g. key:key_..., operator"),
    since: Timestamp | None = Query(None, description="At or after this time"),
    until: Timestamp | None = Query(None, description="Before this time"),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=64),
    caller: Annotated[Caller, require(scopes.AUDIT_READ)],
    services: ServicesDep,
) -> PageOut[AuditEventOut]:
    page = services.audit.events(
        caller,
        action=action,
        key_id=key_id,
        actor=actor,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return PageOut[AuditEventOut].model_validate(page)
