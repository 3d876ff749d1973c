"""``POST /api/v1/verify``: let another service check a key it was handed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from keyplane.api.dependencies import require
from keyplane.api.schemas import VerifyRequest, VerifyResponse
from keyplane.core import scopes
from keyplane.core.network import parse_ip
from keyplane.core.scopes import validate_scopes
from keyplane.http.services import ServicesDep
from keyplane.service.records import Caller
from keyplane.service.services import Services

router = APIRouter(tags=["verify"])


@router.post(
    "/verify",
    summary="Verify a key of the caller's organization (needs keys:verify)",
    description=(
        "Always 200 for a well-formed request: `valid` says whether the key grants "
        "access and `code` says why not. A key of another organization is NOT_FOUND."
    ),
)
async def verify(
    *,
    body: VerifyRequest,
    caller: Annotated[Caller, require(scopes.KEYS_VERIFY)],
    services: ServicesDep,
) -> VerifyResponse:
    return await run_verify(services, caller, body)


async def run_verify(services: Services, caller: Caller, body: VerifyRequest) -> VerifyResponse:
    """The route's work, shared with the pure-ASGI hot path (``api/hotpath.py``)."""
    client_ip = parse_ip(body.client_ip) if body.client_ip is not None else None
    decision = await services.verifier.verify_async(
        body.key,
        required_scopes=validate_scopes(body.scopes),
        client_ip=client_ip,
        user_agent=body.user_agent,
        organization_id=caller.organization_id,
    )
    return VerifyResponse.of(decision)
