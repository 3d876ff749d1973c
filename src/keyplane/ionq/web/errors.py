"""Errors in IonQ's shape: ``{"statusCode": 401, "error": "Unauthorized", "message": "..."}``.

IonQ's clients read ``message`` (and ``error``) from this shape, and retry 5xx
and 429 answers for up to an hour, so every error this surface gives for a
client's mistake (a bad key included) is a 4xx: 401 and 403 for credentials,
400 for any input, 404 for anything not found. A key or project at its limit
of open jobs gets 429 with ``Retry-After``: the queue drains, so a client's
few retries are the right answer to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from keyplane.core.errors import ErrorCode, KeyplaneError, TooManyAttempts
from keyplane.core.keys import KeyFormat
from keyplane.http.problems import problem_for
from keyplane.service.availability import (
    DATABASE_UNAVAILABLE_ERRORS,
    log_database_unavailable,
)
from keyplane.service.services import Services


class PayloadTooLarge(KeyplaneError):
    """The request body is larger than this surface accepts."""

    status = 413
    problem_type = "payload-too-large"
    code = ErrorCode.PAYLOAD_TOO_LARGE


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"statusCode": status, "error": HTTPStatus(status).phrase, "message": message},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def install_error_handlers(app: FastAPI, services: Callable[[], Services | None]) -> None:
    def key_format() -> KeyFormat:
        current = services()
        return current.settings.key_format if current is not None else KeyFormat()

    async def keyplane_error(request: Request, error: Exception) -> Response:
        problem = problem_for(error).redacted(key_format())
        # Keyplane's 422 (a value its rules refuse) is IonQ's 400 Bad Request.
        status = 400 if problem.status == 422 else problem.status
        if status == 429 and (
            "Retry-After" not in problem.headers or isinstance(error, TooManyAttempts)
        ):
            # A quota that never refills, or an address refused for sending too
            # many bad keys: the clients would retry a 429 for up to an hour.
            status = 403
        return error_response(status, problem.detail, problem.headers)

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        # Never echo the input back; say where and what only.
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:])
        message = str(first.get("msg", "invalid request"))
        return error_response(400, f"{where}: {message}" if where else message)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return error_response(error.status_code, str(error.detail), error.headers)

    async def database_unavailable(request: Request, error: Exception) -> Response:
        # A 503 with Retry-After (the clients retry it), one log line, no traceback.
        log_database_unavailable(request.method, request.url.path, error)
        return error_response(
            503,
            "The database is unavailable right now; try again shortly.",
            {"Retry-After": "1"},
        )

    async def unexpected_error(request: Request, error: Exception) -> Response:
        return error_response(500, "Something went wrong on our side.")

    app.add_exception_handler(KeyplaneError, keyplane_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for error_type in DATABASE_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_type, database_unavailable)
    app.add_exception_handler(Exception, unexpected_error)
