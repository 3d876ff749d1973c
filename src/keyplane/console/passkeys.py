"""Passkeys in the console: register (account page, or enrolment), sign in without a
password, and use one as the second factor. The browser side is
``static/passkeys.js``: an ``.../options`` post answers JSON (the ceremony's
options and a one-time token), the credential comes back as an ordinary form post.

Before any ceremony the request's own origin (scheme and Host) is compared with
the one the server expects (``PasskeyService.relying_party``, from the configured
console URL): a console reached under another name is told where passkeys work.
The Host header only ever decides that refusal, never the RP id or the origin.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import JSONResponse, Response

from keyplane.console.account import account_context
from keyplane.console.auth import SSO_REQUIRED
from keyplane.console.factors import client_of, codes_page
from keyplane.console.web import (
    SESSION_COOKIE,
    AnonymousCSRF,
    CSRFVisitorDep,
    Visitor,
    check_csrf,
    is_https,
    pending_visitor,
    redirect,
    redirect_to,
    render,
    safe_next,
    set_session_cookie,
)
from keyplane.core.errors import AuthenticationFailed, InvalidInput
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.passkeys import Ceremony
from keyplane.service.accounts.sessions import SessionStage
from keyplane.service.accounts.sso_policy import SsoRequired
from keyplane.service.services import Services

router = APIRouter()

Text = Annotated[str, Form(max_length=2000)]
Credential = Annotated[str, Form(max_length=64_000)]


class WrongOrigin(InvalidInput):
    status = 400
    problem_type = "wrong-origin"


def _check_origin(request: Request, services: Services) -> None:
    scheme = "https" if is_https(request) else "http"
    own = f"{scheme}://{request.headers.get('host', '')}"
    expected = services.passkeys.relying_party.origin
    if own != expected:
        raise WrongOrigin(f"passkeys work only at {expected}; open the console there")


def _options(ceremony: Ceremony) -> Response:
    return JSONResponse({"token": ceremony.token, "options": json.loads(ceremony.options_json)})


# -- registration on the account page -------------------------------------------


@router.post("/account/passkeys/options")
def register_options(request: Request, services: ServicesDep, visitor: CSRFVisitorDep) -> Response:
    _check_origin(request, services)
    return _options(services.passkeys.begin_registration(visitor.caller, visitor.session.user_id))


@router.post("/account/passkeys")
def register(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    token: Text = "",
    credential: Credential = "",
    name: Text = "Passkey",
) -> Response:
    _check_origin(request, services)
    try:
        done = services.passkeys.finish_registration(
            visitor.caller, visitor.session.user_id, token, credential, name
        )
    except (InvalidInput, AuthenticationFailed) as error:
        message = (
            str(error) if isinstance(error, InvalidInput) else "That passkey could not be added."
        )
        return render(
            request,
            "account.html",
            account_context(services, visitor, error=message),
            status_code=422,
        )
    if done.recovery_codes is not None:
        return codes_page(request, done.recovery_codes, "/console/account")
    return redirect("/account", notice="passkey-added")


@router.post("/account/passkeys/{passkey_id}/remove")
def remove(services: ServicesDep, visitor: CSRFVisitorDep, passkey_id: str) -> Response:
    services.passkeys.remove(visitor.caller, visitor.session.user_id, passkey_id[:40])
    return redirect("/account", notice="passkey-removed")


# -- passwordless sign-in ----------------------------------------------------------


@router.post("/signin/passkey/options")
def sign_in_options(request: Request, services: ServicesDep, _csrf: AnonymousCSRF) -> Response:
    _check_origin(request, services)
    return _options(services.passkeys.begin_sign_in())


@router.post("/signin/passkey")
def sign_in(
    request: Request,
    services: ServicesDep,
    _csrf: AnonymousCSRF,
    token: Text = "",
    credential: Credential = "",
    next: Text = "",
) -> Response:
    _check_origin(request, services)
    target = safe_next(next)
    try:
        started = services.passkeys.finish_sign_in(
            token, credential, replacing=request.cookies.get(SESSION_COOKIE), **client_of(request)
        )
    except (AuthenticationFailed, SsoRequired) as error:
        sso = isinstance(error, SsoRequired)
        return render(
            request,
            "signin.html",
            {
                "next": target,
                "error": SSO_REQUIRED if sso else "That passkey could not sign you in.",
                "signup_open": services.members.signup_open(),
            },
            status_code=403 if sso else 401,
        )
    response = redirect_to(target)
    set_session_cookie(request, response, started.token)
    return response


# -- the second factor ------------------------------------------------------------


def _pending(request: Request, stage: str, csrf_token: str) -> Visitor | None:
    pending = pending_visitor(request, stage)
    if pending is not None:
        check_csrf(request, pending, csrf_token)
    return pending


@router.post("/signin/factor/passkey/options")
def factor_options(request: Request, services: ServicesDep, csrf_token: Text = "") -> Response:
    pending = _pending(request, SessionStage.SECOND_FACTOR, csrf_token)
    if pending is None:
        return JSONResponse({"error": "sign in again"}, status_code=401)
    _check_origin(request, services)
    return _options(services.passkeys.begin_second_factor(pending.session))


@router.post("/signin/factor/passkey")
def factor(
    request: Request,
    services: ServicesDep,
    token: Text = "",
    credential: Credential = "",
    next: Text = "",
    csrf_token: Text = "",
) -> Response:
    pending = _pending(request, SessionStage.SECOND_FACTOR, csrf_token)
    if pending is None:
        return redirect("/signin")
    _check_origin(request, services)
    target = safe_next(next)
    try:
        started = services.passkeys.finish_second_factor(
            pending.session, pending.token, token, credential, **client_of(request)
        )
    except AuthenticationFailed:
        return render(
            request,
            "signin_factor.html",
            {
                "step_csrf": pending.csrf_token,
                "next": target,
                "status": services.factors.status(pending.session.user_id),
                "error": "That passkey could not be used. Try again, or enter a code.",
            },
            status_code=401,
        )
    response = redirect_to(target)
    set_session_cookie(request, response, started.token)
    return response


# -- enrolment when the organization requires a factor --------------------------


@router.post("/signin/enrol/passkey/options")
def enrol_options(request: Request, services: ServicesDep, csrf_token: Text = "") -> Response:
    pending = _pending(request, SessionStage.ENROL_FACTOR, csrf_token)
    if pending is None:
        return JSONResponse({"error": "sign in again"}, status_code=401)
    _check_origin(request, services)
    return _options(services.passkeys.begin_registration(pending.caller, pending.session.user_id))


@router.post("/signin/enrol/passkey")
def enrol(
    request: Request,
    services: ServicesDep,
    token: Text = "",
    credential: Credential = "",
    name: Text = "Passkey",
    next: Text = "",
    csrf_token: Text = "",
) -> Response:
    pending = _pending(request, SessionStage.ENROL_FACTOR, csrf_token)
    if pending is None:
        return redirect("/signin")
    _check_origin(request, services)
    target = safe_next(next)
    try:
        done = services.passkeys.finish_registration(
            pending.caller, pending.session.user_id, token, credential, name
        )
    except (InvalidInput, AuthenticationFailed):
        return redirect_to("/console/signin/enrol")
    started = services.sessions.finish_enrolment(pending.token, **client_of(request))
    codes = done.recovery_codes
    response = codes_page(request, codes, target) if codes else redirect_to(target)
    set_session_cookie(request, response, started.token)
    return response
