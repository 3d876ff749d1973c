"""The organization's key policies: read, change, preview (dry run)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from keyplane.api.dependencies import require
from keyplane.api.schemas import DryRunOut, KeyPolicyChange, KeyPolicyOut
from keyplane.core import scopes
from keyplane.http.services import ServicesDep
from keyplane.service.records import Caller

router = APIRouter(prefix="/policies", tags=["policies"])


@router.get("", summary="The organization's key policies")
def get_policies(
    *,
    caller: Annotated[Caller, require(scopes.POLICIES_READ)],
    services: ServicesDep,
) -> KeyPolicyOut:
    return KeyPolicyOut.model_validate(services.key_policies.policy(caller))


@router.patch(
    "",
    summary="Change the key policies (fields left out keep their value)",
    description="Existing keys are not changed by the lifetime policy, only keys created "
    "or changed afterwards; the stale-key policy acts at the next scan: preview it with "
    "POST /api/v1/policies/dry-run first.",
)
def change_policies(
    *,
    body: KeyPolicyChange,
    caller: Annotated[Caller, require(scopes.POLICIES_WRITE)],
    services: ServicesDep,
) -> KeyPolicyOut:
    changes = body.model_dump(include=body.model_fields_set)
    return KeyPolicyOut.model_validate(services.key_policies.update_policy(caller, changes))


@router.post(
    "/dry-run",
    summary="Preview a proposed policy: the keys it would touch (nothing is saved)",
    description="The body is a change as for PATCH, applied to the saved policy.",
)
def dry_run(
    *,
    body: KeyPolicyChange,
    caller: Annotated[Caller, require(scopes.POLICIES_READ)],
    services: ServicesDep,
) -> DryRunOut:
    changes = body.model_dump(include=body.model_fields_set)
    return DryRunOut.model_validate(services.key_policies.dry_run(caller, changes))
