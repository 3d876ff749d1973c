"""``POST /api/v1/leaks/github``: GitHub's secret scanning partner endpoint.

GitHub authenticates with a signature, not a key: the raw body is verified
against the public keys in ``KEYPLANE_GITHUB_KEYS_FILE`` before anything in it
is parsed.
"""

from __future__ import annotations

from typing import Any, Final

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import TypeAdapter, ValidationError

from keyplane.api.schemas import LeakReportItem, LeakVerdictOut
from keyplane.core.errors import InvalidInput
from keyplane.http.services import ServicesDep
from keyplane.service.keys.leaks import ReportedToken

router = APIRouter(tags=["leaks"])

_REPORT: Final = TypeAdapter(list[LeakReportItem])
_PROBLEM: Final[dict[str, Any]] = {"content": {"application/problem+json": {}}}


@router.post(
    "/leaks/github",
    summary="Receive GitHub secret scanning reports; revoke the leaked keys",
    description=(
        "GitHub's secret scanning partner protocol. The raw body must be signed "
        "(ECDSA P-256, SHA-256) with one of GitHub's public keys, named by "
        "`GITHUB-PUBLIC-KEY-IDENTIFIER`, signature (base64) in "
        "`GITHUB-PUBLIC-KEY-SIGNATURE`. Every reported token that is a real key is "
        "revoked at once; the answer labels each `true_positive` or `false_positive`."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": LeakReportItem.model_json_schema()}
                }
            },
        }
    },
    responses={
        401: {"description": "The signature headers are missing", **_PROBLEM},
        403: {"description": "The signature does not verify", **_PROBLEM},
    },
)
async def github_report(request: Request, services: ServicesDep) -> list[LeakVerdictOut]:
    body = await request.body()
    services.leaks.keyring.verify(
        request.headers.get("github-public-key-identifier"),
        request.headers.get("github-public-key-signature"),
        body,
    )
    try:
        items = _REPORT.validate_json(body)
    except ValidationError as error:
        # Never echo the input: it is a list of (possibly real) keys.
        raise InvalidInput(_first_problem(error.errors(include_input=False))) from None
    tokens = [ReportedToken(item.token, item.type, item.url, item.source) for item in items]
    verdicts = await anyio.to_thread.run_sync(services.leaks.report, tokens)
    return [LeakVerdictOut.model_validate(verdict) for verdict in verdicts]


def _first_problem(errors: list[Any]) -> str:
    if not errors:
        return "the report must be a JSON list of {token, type, url, source}"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid"))
    return f"{where}: {message}" if where else message
