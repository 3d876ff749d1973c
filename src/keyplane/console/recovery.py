"""Links that arrive by mail: forgot password, reset it, verify an address.

Each link's GET shows a page with a button; only the POST uses the token. Mail
scanners and link previews fetch GET links, and must not spend a one-time token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from keyplane.console.web import (
    AnonymousCSRF,
    anonymous_csrf,
    csrf_visitor,
    current_visitor,
    redirect,
    render,
    request_ip,
)
from keyplane.core.errors import InvalidInput, ObjectNotFound
from keyplane.http.services import ServicesDep
from keyplane.service.limits.sign_in_throttle import TooManyAttempts

router = APIRouter()

Text = Annotated[str, Form(max_length=2000)]
Token = Annotated[str, Query(max_length=200)]


@router.get("/forgot-password")
def forgot_password_page(request: Request, services: ServicesDep) -> Response:
    current_visitor(request)
    return render(
        request, "forgot_password.html", {"mail_enabled": services.email_links.mail_enabled}
    )


@router.post("/forgot-password")
def forgot_password(
    request: Request, services: ServicesDep, _csrf: AnonymousCSRF, email: Text = ""
) -> Response:
    """One answer for every address that is well formed: it says nothing of accounts."""
    context: dict[str, object] = {"mail_enabled": services.email_links.mail_enabled}
    try:
        if services.email_links.mail_enabled:
            services.email_links.request_reset(
                email, client_ip=request_ip(request), user_agent=request.headers.get("user-agent")
            )
    except InvalidInput as error:
        return render(
            request,
            "forgot_password.html",
            {**context, "error": str(error), "email": email},
            status_code=422,
        )
    except TooManyAttempts as error:
        return render(
            request,
            "forgot_password.html",
            {
                **context,
                "error": f"Too many requests. Try again in {error.retry_after} seconds.",
                "email": email,
            },
            status_code=429,
            headers={"Retry-After": str(error.retry_after)},
        )
    return render(request, "forgot_password.html", {**context, "sent": True})


@router.get("/reset-password")
def reset_password_page(request: Request, services: ServicesDep, token: Token = "") -> Response:
    current_visitor(request)
    try:
        email = services.email_links.reset_address(token)
    except ObjectNotFound:
        return render(request, "reset_password.html", {"invalid": True}, status_code=404)
    return render(request, "reset_password.html", {"token": token, "email": email})


@router.post("/reset-password")
def reset_password(
    request: Request,
    services: ServicesDep,
    _csrf: AnonymousCSRF,
    token: Text = "",
    password: Text = "",
    confirm_password: Text = "",
) -> Response:
    try:
        if password != confirm_password:
            email = services.email_links.reset_address(token)
            return render(
                request,
                "reset_password.html",
                {"token": token, "email": email, "error": "The two passwords differ."},
                status_code=422,
            )
        services.email_links.reset_password(
            token,
            password,
            client_ip=request_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except ObjectNotFound:
        return render(request, "reset_password.html", {"invalid": True}, status_code=404)
    except InvalidInput as error:
        email = services.email_links.reset_address(token)
        return render(
            request,
            "reset_password.html",
            {"token": token, "email": email, "error": str(error)},
            status_code=422,
        )
    return redirect("/signin", notice="password-reset")


@router.get("/verify-email")
def verify_email_page(request: Request, token: Token = "") -> Response:
    current_visitor(request)
    return render(request, "verify_email.html", {"token": token})


@router.post("/verify-email")
def verify_email(
    request: Request, services: ServicesDep, token: Text = "", csrf_token: Text = ""
) -> Response:
    """Anyone holding the link may confirm it (it proves the mailbox, not a session);
    the form carries the session's CSRF token when signed in, else the browser's."""
    visitor = current_visitor(request)
    if visitor is not None:
        csrf_visitor(request, csrf_token)
    else:
        anonymous_csrf(request, csrf_token)
    try:
        email = services.email_links.verify_email(
            token, actor_ip=request_ip(request), user_agent=request.headers.get("user-agent")
        )
    except ObjectNotFound:
        return render(request, "verify_email.html", {"invalid": True}, status_code=404)
    if visitor is not None:
        return redirect("/account", notice="email-verified")
    return render(request, "verify_email.html", {"verified": email})
