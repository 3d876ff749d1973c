"""``GET /api/v1/whoami``: which key is this?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from keyplane.api.dependencies import Authenticated, authenticate
from keyplane.api.schemas import WhoAmI

router = APIRouter(tags=["keys"])


@router.get("/whoami", summary="The calling key's identity (any valid key)")
async def whoami(auth: Annotated[Authenticated, Depends(authenticate)]) -> WhoAmI:
    return WhoAmI.model_validate(auth.key)
