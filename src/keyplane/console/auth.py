"""Sign in, sign up, join by invitation, sign out, change password."""

from __future__ import annotations

from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from keyplane.console.account import account_context
from keyplane.console.web import (
    DEFAULT_PAGE,
    PREFIX,
    SESSION_COOKIE,
    SESSION_ENDED,
    STEP_PAGES,
    AnonymousCSRF,
    CSRFVisitorDep,
    SignInRequired,
    VisitorDep,
    anonymous_csrf,
    check_csrf,
    clear_session_cookie,
    csrf_visitor,
    current_visitor,
    pending_visitor,
    redirect,
    redirect_to,
    render,
    request_ip,
    safe_next,
    set_session_cookie,
)
from keyplane.core.errors import (
    AuthenticationFailed,
    InvalidInput,
    NotPermitted,
    ObjectNotFound,
    StateConflict,
)
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.invitations import AccountExists
from keyplane.service.accounts.members import SignupClosed
from keyplane.service.accounts.organizations import check_email
from keyplane.service.accounts.sessions import NewSession
from keyplane.service.accounts.sso_policy import SsoRequired

router = APIRouter()

#: The sign-in page's answer when the organization wants SSO (a password or a passkey).
SSO_REQUIRED: Final = (
    "Your organization requires single sign-on. "
    "Use “Sign in with SSO” with your work e-mail address."
)

Text = Annotated[str, Form(max_length=2000)]


def _signed_in(request: Request, started: NewSession, target: str = DEFAULT_PAGE) -> Response:
    """The answer that hands over a new session; ``target`` was checked before the
    session was made (a redirect that fails after it would leave a session row).

    A session still waiting for its second factor (or an enrolment) goes to that
    step first, carrying ``target`` along."""
    step = STEP_PAGES.get(started.record.stage)
    if step is not None:
        query = urlencode({"next": target}) if target != DEFAULT_PAGE else ""
        response = redirect_to(f"{PREFIX}{step}" + (f"?{query}" if query else ""))
    else:
        response = redirect_to(target)
    set_session_cookie(request, response, started.token)
    return response


@router.get("/signin")
def sign_in_page(
    request: Request,
    services: ServicesDep,
    next: str | None = Query(None, max_length=500),
    ended: str = Query("", max_length=1),
) -> Response:
    if current_visitor(request) is not None:
        return redirect("/keys")
    return render(
        request,
        "signin.html",
        {
            "next": safe_next(next),
            "signup_open": services.members.signup_open(),
            "session_ended": SESSION_ENDED if ended == "1" else None,
        },
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
    target = safe_next(next)
    try:
        started = services.sessions.sign_in(
            email,
            password,
            client_ip=request_ip(request),
            user_agent=request.headers.get("user-agent"),
            replacing=request.cookies.get(SESSION_COOKIE),
        )
    except (AuthenticationFailed, SsoRequired) as error:
        if isinstance(error, SsoRequired):
            message = SSO_REQUIRED
        elif error.code == "BAD_CREDENTIALS":
            message = "Wrong e-mail address or password."
        else:
            message = "This account no longer belongs to an organization."
        return render(
            request,
            "signin.html",
            {
                "next": target,
                "email": email,
                "error": message,
                "signup_open": services.members.signup_open(),
            },
            status_code=403 if isinstance(error, SsoRequired) else 401,
        )
    return _signed_in(request, started, target)


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
    if services.email_links.mail_enabled:
        return _sign_up_by_mail(request, services, email, password, organization)
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
    except AuthenticationFailed:  # the address has an account and this is not its password
        return render(
            request,
            "signup.html",
            {
                "signup_open": True,
                "email": email,
                "organization": organization,
                "error": "Wrong e-mail address or password.",
            },
            status_code=401,
        )
    except (InvalidInput, StateConflict) as error:
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


def _sign_up_by_mail(
    request: Request, services: ServicesDep, email: str, password: str, organization: str
) -> Response:
    """With mail, sign-up answers "check your inbox" whether or not the address has an
    account (``MemberService.sign_up_by_mail``)."""
    form = {"signup_open": True, "email": email, "organization": organization}
    try:
        services.members.sign_up_by_mail(
            email=email,
            password=password,
            organization_name=organization,
            client_ip=request_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except SignupClosed:
        return render(request, "signup.html", {"signup_open": False}, status_code=403)
    except InvalidInput as error:
        return render(
            request,
            "signup.html",
            {**form, "error": str(error), "field": error.field},
            status_code=422,
        )
    return render(request, "signup.html", {"signup_open": True, "sent_to": check_email(email)})


def _join_page(
    request: Request,
    services: ServicesDep,
    token: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        invitation = services.invitations.find_invitation(token)
    except ObjectNotFound:
        return render(request, "join.html", {"invitation": None}, status_code=404)
    signin_url = f"{PREFIX}/signin?" + urlencode({"next": f"{PREFIX}/join?token={token}"})
    return render(
        request,
        "join.html",
        {"invitation": invitation, "token": token, "error": error, "signin_url": signin_url},
        status_code=status_code,
    )


@router.get("/join")
def join_page(
    request: Request, services: ServicesDep, token: str = Query("", max_length=200)
) -> Response:
    current_visitor(request)
    return _join_page(request, services, token)


@router.post("/join")
def join(
    request: Request,
    services: ServicesDep,
    token: Text = "",
    password: Text = "",
    confirm_password: Text = "",
    csrf_token: Text = "",
) -> Response:
    """Accept an invitation. Signed in, the visitor joins as themselves (if they are
    the invited address); signed out, the link creates a new account for the address
    and never touches an existing one."""
    visitor = current_visitor(request)
    client = {
        "client_ip": request_ip(request),
        "user_agent": request.headers.get("user-agent"),
        "replacing": request.cookies.get(SESSION_COOKIE),
    }
    try:
        if visitor is not None:
            csrf_visitor(request, csrf_token)
            started = services.invitations.accept_signed_in(token, visitor.session, **client)
        else:
            anonymous_csrf(request, csrf_token)
            if password != confirm_password:
                raise InvalidInput("the two passwords differ", field="confirm_password")
            started = services.invitations.accept_new_account(token, password, **client)
    except ObjectNotFound:
        return render(request, "join.html", {"invitation": None}, status_code=404)
    except (InvalidInput, AccountExists, NotPermitted) as error:
        status = (
            422
            if isinstance(error, InvalidInput)
            else 409
            if isinstance(error, AccountExists)
            else 403
        )
        return _join_page(request, services, token, error=str(error), status_code=status)
    return _signed_in(request, started)


@router.post("/signout")
def sign_out(request: Request, services: ServicesDep, csrf_token: Text = "") -> Response:
    """Signs out a session of any stage (one waiting for its second factor too)."""
    visitor = current_visitor(request) or next(
        (
            found
            for found in (pending_visitor(request, stage) for stage in STEP_PAGES)
            if found is not None
        ),
        None,
    )
    if visitor is None:
        raise SignInRequired(f"{PREFIX}/keys")
    check_csrf(request, visitor, csrf_token)
    services.sessions.sign_out(visitor.token)
    response = redirect("/signin", notice="signed-out")
    clear_session_cookie(request, response)
    return response


@router.get("/account")
def account_page(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    return render(request, "account.html", account_context(services, visitor))


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
            request,
            "account.html",
            account_context(services, visitor, error=str(error)),
            status_code=422,
        )
    return redirect("/account", notice="password-changed")
