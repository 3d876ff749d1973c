"""Sign in, sign up, join by invitation, sign out, change password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from keyplane.console.web import (
    SESSION_COOKIE,
    AnonymousCSRF,
    CSRFVisitorDep,
    ServicesDep,
    VisitorDep,
    clear_session_cookie,
    current_visitor,
    redirect,
    render,
    request_ip,
    safe_next,
    set_session_cookie,
)
from keyplane.core.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from keyplane.service.members import SignupClosed
from keyplane.service.sessions import NewSession

router = APIRouter()

Text = Annotated[str, Form(max_length=2000)]


def _signed_in(request: Request, started: NewSession, next_path: str | None = None) -> Response:
    response = redirect("")
    response.headers["location"] = safe_next(next_path)
    set_session_cookie(request, response, started.token)
    return response


@router.get("/signin")
def sign_in_page(
    request: Request, services: ServicesDep, next: str | None = Query(None, max_length=500)
) -> Response:
    if current_visitor(request) is not None:
        return redirect("/keys")
    return render(
        request,
        "signin.html",
        {"next": safe_next(next), "signup_open": services.members.signup_open()},
    )


@router.post("/signin")
def sign_in(
    request: Request,
    services: ServicesDep,
    _csrf: AnonymousCSRF,
    email: Text = "",
    password: Text = "",
    next: Text = "",
) -> Response:
    try:
        started = services.sessions.sign_in(
            email,
            password,
            client_ip=request_ip(request),
            user_agent=request.headers.get("user-agent"),
            replacing=request.cookies.get(SESSION_COOKIE),
        )
    except AuthenticationFailed as error:
        message = (
            "Wrong e-mail address or password."
            if error.code == "BAD_CREDENTIALS"
            else "This account no longer belongs to an organization."
        )
        return render(
            request,
            "signin.html",
            {
                "next": safe_next(next),
                "email": email,
                "error": message,
                "signup_open": services.members.signup_open(),
            },
            status_code=401,
        )
    return _signed_in(request, started, next)


@router.get("/signup")
def sign_up_page(request: Request, services: ServicesDep) -> Response:
    if current_visitor(request) is not None:
        return redirect("/keys")
    return render(request, "signup.html", {"signup_open": services.members.signup_open()})


@router.post("/signup")
def sign_up(
    request: Request,
    services: ServicesDep,
    _csrf: AnonymousCSRF,
    email: Text = "",
    password: Text = "",
    organization: Text = "",
) -> Response:
    try:
        started = services.members.sign_up(
            email=email,
            password=password,
            organization_name=organization,
            client_ip=request_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except SignupClosed:
        return render(request, "signup.html", {"signup_open": False}, status_code=403)
    except (InvalidInput, Conflict) as error:
        return render(
            request,
            "signup.html",
            {
                "signup_open": True,
                "email": email,
                "organization": organization,
                "error": str(error),
                "field": getattr(error, "field", None),
            },
            status_code=422 if isinstance(error, InvalidInput) else 409,
        )
    return _signed_in(request, started)


@router.get("/join")
def join_page(
    request: Request, services: ServicesDep, token: str = Query("", max_length=200)
) -> Response:
    try:
        invitation = services.members.find_invitation(token)
    except NotFound:
        return render(request, "join.html", {"invitation": None}, status_code=404)
    return render(request, "join.html", {"invitation": invitation, "token": token})


@router.post("/join")
def join(
    request: Request,
    services: ServicesDep,
    _csrf: AnonymousCSRF,
    token: Text = "",
    password: Text = "",
) -> Response:
    try:
        started = services.members.accept(
            token,
            password,
            client_ip=request_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except NotFound:
        return render(request, "join.html", {"invitation": None}, status_code=404)
    except (InvalidInput, AuthenticationFailed) as error:
        invitation = services.members.find_invitation(token)
        return render(
            request,
            "join.html",
            {"invitation": invitation, "token": token, "error": str(error)},
            status_code=422 if isinstance(error, InvalidInput) else 401,
        )
    return _signed_in(request, started)


@router.post("/signout")
def sign_out(request: Request, services: ServicesDep, visitor: CSRFVisitorDep) -> Response:
    services.sessions.sign_out(visitor.token)
    response = redirect("/signin")
    clear_session_cookie(request, response)
    return response


@router.get("/account")
def account_page(request: Request, visitor: VisitorDep) -> Response:
    return render(request, "account.html", {"section": "account"})


@router.post("/account/password")
def change_password(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    current_password: Text = "",
    password: Text = "",
    confirm_password: Text = "",
) -> Response:
    try:
        if password != confirm_password:
            raise InvalidInput("the two new passwords differ", field="confirm_password")
        services.sessions.change_password(
            visitor.session, current_password, password, actor=visitor.caller.actor
        )
    except InvalidInput as error:
        return render(
            request, "account.html", {"section": "account", "error": str(error)}, status_code=422
        )
    return redirect("/account", notice="password-changed")
