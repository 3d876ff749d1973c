"""Every error the API answers is an RFC 9457 problem; this installs the handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from keyplane.core.errors import KeyplaneError
from keyplane.http.problems import Problem, problem_for

logger = logging.getLogger("keyplane.api")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KeyplaneError, _keyplane_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _keyplane_error(_request: Request, error: Exception) -> Response:
    return problem_for(error).response()


async def _validation_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    # Never echo the input back: it may be the key someone is trying to verify.
    errors: list[dict[str, Any]] = [
        {
            "loc": [str(part) for part in item.get("loc", ())],
            "msg": item.get("msg", ""),
            "type": item.get("type", ""),
        }
        for item in error.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
    return Problem(
        422,
        "validation-error",
        f"{where}: {first['msg']}" if where else str(first["msg"]),
        {"code": "VALIDATION_ERROR", "errors": errors},
    ).response()


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    return Problem(
        error.status_code, "", str(error.detail), {}, dict(error.headers or {})
    ).response()


async def _unexpected_error(_request: Request, error: Exception) -> Response:
    logger.error("unhandled %s while serving a request", type(error).__name__, exc_info=error)
    return problem_for(error).response()
