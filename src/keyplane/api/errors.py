"""Every error the API answers is an RFC 9457 problem; this installs the handlers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from keyplane.core.errors import KeyplaneError
from keyplane.core.keys import KeyFormat
from keyplane.http.problems import Problem, problem_for
from keyplane.http.services import services_or_none
from keyplane.service.availability import (
    DATABASE_UNAVAILABLE_ERRORS,
    log_database_unavailable,
)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KeyplaneError, _keyplane_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_type in DATABASE_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_type, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)


def database_unavailable() -> Problem:
    return Problem(
        503,
        "database-unavailable",
        "The database is unavailable right now; try again shortly.",
        {"code": "DATABASE_UNAVAILABLE"},
        {"Retry-After": "1"},
    )


def _respond(request: Request, problem: Problem) -> Response:
    services = services_or_none(request.app)
    key_format = services.settings.key_format if services is not None else KeyFormat()
    return problem.redacted(key_format).response()


async def _keyplane_error(request: Request, error: Exception) -> Response:
    return _respond(request, problem_for(error))


async def _validation_error(request: Request, error: Exception) -> Response:
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
    if any(item["type"] == "json_invalid" for item in errors):
        problem = Problem(
            400, "invalid-json", "The request body is not valid JSON.", {"code": "INVALID_JSON"}
        )
        return _respond(request, problem)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
    return _respond(
        request,
        Problem(
            422,
            "validation-error",
            f"{where}: {first['msg']}" if where else str(first["msg"]),
            {"code": "VALIDATION_ERROR", "errors": errors},
        ),
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        # Starlette names the methods of the first route that matched the path only;
        # a path served by several routes (GET and POST /projects) must list them all.
        headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
    return _respond(request, Problem(error.status_code, "", str(error.detail), {}, headers))


def _allowed_methods(request: Request) -> set[str]:
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        if not context.path or not context.methods:
            continue
        pattern, _, _ = compile_path(context.path)
        if pattern.match(request.url.path):
            methods |= set(context.methods)
    return methods


async def _database_unavailable(request: Request, error: Exception) -> Response:
    log_database_unavailable(request.method, request.url.path, error)
    return _respond(request, database_unavailable())


async def _unexpected_error(request: Request, error: Exception) -> Response:
    # Starlette re-raises after this handler, so the server logs the traceback
    # once (through the redacting log filter); logging here too would double it.
    return _respond(request, problem_for(error))
