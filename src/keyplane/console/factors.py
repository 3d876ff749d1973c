"""Second factors in the console: the factor step of sign-in, enrolment (on the
account page, or as the only thing a session may do when the organization
requires a factor), recovery codes, and sudo mode's "confirm it is you" page.

Pages of a pending session (``/signin/factor``, ``/signin/enrol``) find it with
``pending_visitor`` and check the CSRF token bound to it; every other page only
knows active sessions (``current_visitor``).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated
from urllib.parse import urlencode

import segno
from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from keyplane.console.account import account_context
from keyplane.console.web import (
    PREFIX,
    CSRFVisitorDep,
    Visitor,
    VisitorDep,
    check_csrf,
    csrf_for_session,
    pending_visitor,
    redirect,
    redirect_to,
    render,
    request_ip,
    safe_next,
    set_session_cookie,
)
from keyplane.core.errors import AuthenticationFailed, InvalidInput, StateConflict
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.factors import RecoveryCodes, TotpEnrolment
from keyplane.service.accounts.sessions import SessionStage
from keyplane.service.services import Services

router = APIRouter()

Text = Annotated[str, Form(max_length=2000)]
Code = Annotated[str, Form(max_length=64)]
Next = Annotated[str | None, Query(max_length=500)]


def qr_data_uri(text: str) -> str:
    """A QR code of ``text`` as an SVG ``data:`` URI (the CSP allows ``img-src data:``)."""
    return str(segno.make(text, error="m").svg_data_uri(scale=5, border=2))


def _grouped(secret: str) -> str:
    return " ".join(secret[index : index + 4] for index in range(0, len(secret), 4))


def client_of(request: Request) -> dict[str, str | None]:
    return {"client_ip": request_ip(request), "user_agent": request.headers.get("user-agent")}


# -- the second-factor step of sign-in ----------------------------------------


def _factor_page(
    request: Request,
    services: Services,
    pending: Visitor,
    next: str | None,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    status = services.factors.status(pending.session.user_id)
    return render(
        request,
        "signin_factor.html",
        {
            "step_csrf": csrf_for_session(pending.token),
            "next": safe_next(next),
            "status": status,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/signin/factor")
def factor_page(request: Request, services: ServicesDep, next: Next = None) -> Response:
    pending = pending_visitor(request, SessionStage.SECOND_FACTOR)
    if pending is None:
        return redirect("/signin")
    return _factor_page(request, services, pending, next)


@router.post("/signin/factor")
def factor_submit(
    request: Request,
    services: ServicesDep,
    code: Code = "",
    next: Text = "",
    csrf_token: Text = "",
) -> Response:
    pending = pending_visitor(request, SessionStage.SECOND_FACTOR)
    if pending is None:
        return redirect("/signin")
    check_csrf(request, pending, csrf_token)
    target = safe_next(next)
    try:
        started = services.sessions.complete_second_factor(
            pending.token, code, **client_of(request)
        )
    except AuthenticationFailed as error:
        if error.code != "BAD_CODE":
            return redirect("/signin")
        return _factor_page(
            request,
            services,
            pending,
            target,
            error="That code is not right. Try the current code, or a recovery code.",
            status_code=401,
        )
    response = redirect_to(target)
    set_session_cookie(request, response, started.token)
    return response


# -- enrolment while the organization requires a factor ---------------------


@router.get("/signin/enrol")
def enrol_page(request: Request, services: ServicesDep, next: Next = None) -> Response:
    pending = pending_visitor(request, SessionStage.ENROL_FACTOR)
    if pending is None:
        return redirect("/signin")
    enrolment = services.factors.pending_totp(pending.session.user_id)
    return render(
        request,
        "signin_enrol.html",
        {
            "step_csrf": csrf_for_session(pending.token),
            "next": safe_next(next),
            "organization_name": pending.session.organization_name,
            **_setup_context(enrolment),
        },
    )


@router.post("/signin/enrol/totp")
def enrol_totp(
    request: Request, services: ServicesDep, next: Text = "", csrf_token: Text = ""
) -> Response:
    pending = pending_visitor(request, SessionStage.ENROL_FACTOR)
    if pending is None:
        return redirect("/signin")
    check_csrf(request, pending, csrf_token)
    with suppress(StateConflict):  # confirmed already (another tab): finishing is left
        services.factors.begin_totp(pending.caller, pending.session.user_id)
    return redirect_to(f"{PREFIX}/signin/enrol?" + urlencode({"next": safe_next(next)}))


@router.post("/signin/enrol/confirm")
def enrol_confirm(
    request: Request,
    services: ServicesDep,
    code: Code = "",
    next: Text = "",
    csrf_token: Text = "",
) -> Response:
    pending = pending_visitor(request, SessionStage.ENROL_FACTOR)
    if pending is None:
        return redirect("/signin")
    check_csrf(request, pending, csrf_token)
    target = safe_next(next)
    user_id = pending.session.user_id
    try:
        codes = services.factors.confirm_totp(pending.caller, user_id, code)
    except (InvalidInput, StateConflict) as error:
        return render(
            request,
            "signin_enrol.html",
            {
                "step_csrf": pending.csrf_token,
                "next": target,
                "organization_name": pending.session.organization_name,
                "error": str(error),
                **_setup_context(services.factors.pending_totp(user_id)),
            },
            status_code=422,
        )
    started = services.sessions.finish_enrolment(pending.token, **client_of(request))
    response = codes_page(request, codes, target) if codes else redirect_to(target)
    set_session_cookie(request, response, started.token)
    return response


# -- the account page: authenticator app, recovery codes ----------------------


def _setup_context(enrolment: TotpEnrolment | None) -> dict[str, object]:
    if enrolment is None:
        return {"enrolment": None}
    return {
        "enrolment": True,
        "qr": qr_data_uri(enrolment.uri),
        "secret": _grouped(enrolment.secret),
    }


def codes_page(request: Request, codes: RecoveryCodes, target: str) -> Response:
    return render(
        request,
        "recovery_codes.html",
        {"codes": codes.codes, "continue_to": target, "section": "account"},
        status_code=201,
    )


@router.post("/account/totp")
def begin_totp(request: Request, services: ServicesDep, visitor: CSRFVisitorDep) -> Response:
    try:
        enrolment = services.factors.begin_totp(visitor.caller, visitor.session.user_id)
    except StateConflict as error:
        return render(
            request,
            "account.html",
            account_context(services, visitor, error=str(error)),
            status_code=409,
        )
    return render(request, "totp_setup.html", {"section": "account", **_setup_context(enrolment)})


@router.post("/account/totp/confirm")
def confirm_totp(
    request: Request, services: ServicesDep, visitor: CSRFVisitorDep, code: Code = ""
) -> Response:
    user_id = visitor.session.user_id
    try:
        codes = services.factors.confirm_totp(visitor.caller, user_id, code)
    except (InvalidInput, StateConflict) as error:
        return render(
            request,
            "totp_setup.html",
            {
                "section": "account",
                "error": str(error),
                **_setup_context(services.factors.pending_totp(user_id)),
            },
            status_code=422,
        )
    if codes is None:
        return redirect("/account", notice="totp-added")
    return codes_page(request, codes, f"{PREFIX}/account")


@router.post("/account/totp/remove")
def remove_totp(services: ServicesDep, visitor: CSRFVisitorDep) -> Response:
    services.factors.remove_totp(visitor.caller, visitor.session.user_id)
    return redirect("/account", notice="totp-removed")


@router.post("/account/recovery-codes")
def regenerate_codes(request: Request, services: ServicesDep, visitor: CSRFVisitorDep) -> Response:
    codes = services.factors.regenerate_recovery_codes(visitor.caller, visitor.session.user_id)
    return codes_page(request, codes, f"{PREFIX}/account")


# -- sudo mode -------------------------------------------------------------------


def _sudo_page(
    request: Request,
    services: Services,
    visitor: Visitor,
    next: str | None,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "sudo.html",
        {
            "next": safe_next(next),
            "status": services.factors.status(visitor.session.user_id),
            "error": error,
            "has_password": True,
        },
        status_code=status_code,
    )


@router.get("/sudo")
def sudo_page(
    request: Request, services: ServicesDep, visitor: VisitorDep, next: Next = None
) -> Response:
    return _sudo_page(request, services, visitor, next)


@router.post("/sudo")
def sudo_submit(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    password: Text = "",
    code: Code = "",
    next: Text = "",
) -> Response:
    try:
        services.sessions.reauthenticate(
            visitor.session, password=password, code=code, **client_of(request)
        )
    except AuthenticationFailed:
        return _sudo_page(
            request,
            services,
            visitor,
            next,
            error="That is not right. Try again.",
            status_code=401,
        )
    return redirect_to(safe_next(next))
