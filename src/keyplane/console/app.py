"""The console's ASGI app: routes, static files, HTML error pages, security headers."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Final
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyplane.console import (
    account,
    auth,
    factors,
    keys,
    organization,
    passkeys,
    policies,
    recovery,
    sso,
    webhooks,
)
from keyplane.console.formatting import (
    actor_label,
    callers_phrase,
    day,
    device,
    duration,
    exact,
    relative,
)
from keyplane.console.web import (
    HERE,
    PREFIX,
    CSRFFailed,
    SignInRequired,
    clear_session_cookie,
    page_of,
    redirect_target,
    redirect_to,
    render,
    templates,
)
from keyplane.core.errors import KeyplaneError, ReauthenticationRequired
from keyplane.http.services import attach
from keyplane.service.availability import DATABASE_UNAVAILABLE_ERRORS, log_database_unavailable
from keyplane.service.limits.sign_in_throttle import TooManyAttempts
from keyplane.service.services import Services

#: Scripts, styles and images from this origin only; no inline script or style,
#: no framing, forms post only here.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)


class SecurityHeaders:
    """Adds the security headers to every console answer, and ``no-store`` to pages
    (they show key metadata, and once a key's value); static files may be cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith(f"{PREFIX}/static/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if static or name.lower() != b"cache-control"
                ]
                headers.extend(SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_console(services: Callable[[], Services]) -> FastAPI:
    """The console app; ``services`` returns the process's services when a request comes."""
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    attach(console, services)
    env = templates.env
    env.filters["relative"] = relative
    env.filters["exact"] = exact
    env.filters["day"] = day
    env.filters["actor"] = actor_label
    env.filters["duration"] = duration
    env.filters["device"] = device
    env.filters["callers"] = callers_phrase
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (
        auth,
        account,
        recovery,
        factors,
        passkeys,
        sso,
        keys,
        organization,
        policies,
        webhooks,
    ):
        console.include_router(module.router)

    @console.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return redirect_to(f"{PREFIX}/keys")

    _install_error_pages(console)
    console.add_middleware(SecurityHeaders)
    return console


def _install_error_pages(console: FastAPI) -> None:
    async def sign_in_required(request: Request, error: Exception) -> Response:
        assert isinstance(error, SignInRequired)
        target = redirect_target(error.next_path)
        params = {"next": target} if target else {}
        if error.ended:
            params["ended"] = "1"
        query = f"?{urlencode(params)}" if params else ""
        response = redirect_to(f"{PREFIX}{error.step_path or '/signin'}{query}")
        if error.ended:  # the cookie names a session that is gone: drop it
            clear_session_cookie(request, response)
        return response

    async def reauthentication_required(request: Request, error: Exception) -> Response:
        assert isinstance(error, ReauthenticationRequired)
        target = redirect_target(page_of(request))
        query = f"?{urlencode({'next': target})}" if target else ""
        return redirect_to(f"{PREFIX}/sudo{query}")

    async def keyplane_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, KeyplaneError)
        status, message = _status_of(error)
        retry_after = error.problem_headers().get("Retry-After") if status < 500 else None
        headers = {"Retry-After": retry_after} if retry_after else {}
        return error_page(request, status, message, headers=headers)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        message = "There is no page at this address." if error.status_code == 404 else None
        return error_page(request, error.status_code, message)

    async def validation_error(request: Request, error: Exception) -> Response:
        return error_page(request, 422, "The form was incomplete. Go back and try again.")

    async def database_unavailable(request: Request, error: Exception) -> Response:
        log_database_unavailable(request.method, request.url.path, error)
        return error_page(
            request,
            503,
            "The database is unavailable right now. Try again in a moment.",
            headers={"Retry-After": "1"},
        )

    async def unexpected(request: Request, error: Exception) -> Response:
        return error_page(request, 500, "Something went wrong on our side.")

    console.add_exception_handler(SignInRequired, sign_in_required)
    console.add_exception_handler(ReauthenticationRequired, reauthentication_required)
    console.add_exception_handler(KeyplaneError, keyplane_error)
    console.add_exception_handler(StarletteHTTPException, http_error)
    console.add_exception_handler(RequestValidationError, validation_error)
    for error_type in DATABASE_UNAVAILABLE_ERRORS:
        console.add_exception_handler(error_type, database_unavailable)
    console.add_exception_handler(Exception, unexpected)


def _status_of(error: KeyplaneError) -> tuple[int, str]:
    """The status the error's class carries, in the console's words (a page for a
    person, not a problem for a program)."""
    if error.status >= 500:
        return 500, "Something went wrong on our side."
    if isinstance(error, CSRFFailed):
        return 403, f"This form could not be accepted ({error}). Reload the page and try again."
    if error.status == 404:
        return 404, "Not found, or not in your organization."
    if error.status == 403:
        return 403, f"You are not allowed to do this: {error}."
    if isinstance(error, TooManyAttempts):
        return 429, f"Too many failed attempts. Try again in {error.retry_after} seconds."
    return error.status, str(error)


def error_page(
    request: Request, status: int, message: str | None, *, headers: dict[str, str] | None = None
) -> Response:
    template = "_error.html" if request.headers.get("x-requested-with") == "fetch" else "error.html"
    return render(
        request,
        template,
        {"status": status, "title": HTTPStatus(status).phrase, "message": message or ""},
        status_code=status,
        headers=headers,
    )
