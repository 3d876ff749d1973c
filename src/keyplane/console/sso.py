"""Single sign-on pages: "Sign in with SSO", the provider's callback, and the
owner's SSO settings. The rules live in ``service/accounts/sso.py``."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from keyplane.console.web import (
    PREFIX,
    SESSION_COOKIE,
    AnonymousCSRF,
    CSRFVisitorDep,
    Visitor,
    VisitorDep,
    is_https,
    redirect,
    redirect_to,
    render,
    request_ip,
    safe_next,
    set_session_cookie,
)
from keyplane.core.errors import InvalidInput
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.sso import SsoFailed
from keyplane.service.records import Role

router = APIRouter()

#: The browser's half of a sign-in in flight (the row holds its SHA-256).
CHALLENGE_COOKIE: Final = "keyplane_sso"
_COOKIE_PATH: Final = f"{PREFIX}/sso"
#: Said for every address whose domain has no enabled connection, whichever it is.
NEUTRAL_ANSWER: Final = (
    "If your organization uses single sign-on for this address, check that you typed it "
    "right and try again. Otherwise, sign in with your password."
)

Text = Annotated[str, Form(max_length=2000)]


def _sso_page(
    request: Request,
    *,
    next_path: str,
    email: str = "",
    message: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "sso_signin.html",
        {"next": next_path, "email": email, "message": message, "error": error},
        status_code=status_code,
    )


@router.get("/sso")
def sso_page(request: Request, next: str | None = Query(None, max_length=500)) -> Response:
    return _sso_page(request, next_path=safe_next(next))


@router.post("/sso/start")
def sso_start(
    request: Request,
    services: ServicesDep,
    _csrf: AnonymousCSRF,
    email: Text = "",
    next: Text = "",
) -> Response:
    target = safe_next(next)
    try:
        start = services.sso.begin(email, target)
    except InvalidInput as error:
        return _sso_page(request, next_path=target, email=email, error=str(error), status_code=422)
    except SsoFailed as failure:
        return _sso_page(
            request, next_path=target, email=email, error=str(failure), status_code=failure.status
        )
    if start is None:
        return _sso_page(request, next_path=target, email=email, message=NEUTRAL_ANSWER)
    # A page that moves on by itself (meta refresh), not a 303: the console's CSP
    # (form-action 'self') rightly stops a form whose answer redirects off-site.
    response = render(request, "sso_redirect.html", {"url": start.authorization_url})
    response.set_cookie(
        CHALLENGE_COOKIE,
        start.token,
        max_age=start.expires_in,
        path=_COOKIE_PATH,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back, not on sub-requests
        secure=is_https(request),
    )
    return response


@router.get("/sso/callback")
def sso_callback(
    request: Request,
    services: ServicesDep,
    state: str | None = Query(None, max_length=500),
    code: str | None = Query(None, max_length=2000),
    error: str | None = Query(None, max_length=200),
) -> Response:
    try:
        done = services.sso.complete(
            request.cookies.get(CHALLENGE_COOKIE),
            state=state,
            code=code,
            error=error,
            client_ip=request_ip(request),
            user_agent=request.headers.get("user-agent"),
            replacing=request.cookies.get(SESSION_COOKIE),
        )
    except SsoFailed as failure:
        response = render(
            request,
            "sso_failed.html",
            {"message": str(failure), "status": failure.status},
            status_code=failure.status,
        )
        _forget_challenge(request, response)
        return response
    response = redirect_to(safe_next(done.next_path))
    set_session_cookie(request, response, done.started.token)
    _forget_challenge(request, response)
    return response


def _forget_challenge(request: Request, response: Response) -> None:
    response.delete_cookie(
        CHALLENGE_COOKIE, path=_COOKIE_PATH, httponly=True, samesite="lax", secure=is_https(request)
    )


# -- settings (owners) --------------------------------------------------------


def _settings_page(
    request: Request,
    services: ServicesDep,
    visitor: Visitor,
    *,
    status_code: int = 200,
    **extra: object,
) -> Response:
    connection = services.sso.connection(visitor.caller)
    return render(
        request,
        "sso_settings.html",
        {
            "section": "sso",
            "connection": connection,
            "redirect_uri": services.sso.redirect_uri,
            "roles": [Role.MEMBER.value, Role.ADMIN.value],
            **extra,
        },
        status_code=status_code,
    )


@router.get("/settings/sso")
def sso_settings(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    return _settings_page(request, services, visitor)


@router.post("/settings/sso")
def save_sso(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    issuer: Text = "",
    client_id: Text = "",
    client_secret: Text = "",
    domain: Text = "",
    default_role: Annotated[str, Form(max_length=20)] = "member",
    enabled: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        services.sso.configure(
            visitor.caller,
            issuer=issuer,
            client_id=client_id,
            client_secret=client_secret,
            domain=domain,
            default_role=default_role,
            enabled=bool(enabled),
        )
    except InvalidInput as error:
        # The form comes back as typed, except the secret (never echoed).
        return _settings_page(
            request,
            services,
            visitor,
            status_code=422,
            error=str(error),
            field=error.field,
            form={
                "issuer": issuer,
                "client_id": client_id,
                "domain": domain,
                "default_role": default_role,
                "enabled": bool(enabled),
            },
        )
    return redirect("/settings/sso", notice="sso-saved")


@router.post("/settings/sso/remove")
def remove_sso(services: ServicesDep, visitor: CSRFVisitorDep) -> Response:
    services.sso.remove(visitor.caller)
    return redirect("/settings/sso", notice="sso-removed")


@router.post("/settings/sso/policy")
def sso_policy(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    require_sso: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        services.sso.set_policy(visitor.caller, bool(require_sso))
    except InvalidInput as error:
        return _settings_page(request, services, visitor, status_code=422, policy_error=str(error))
    return redirect("/settings/sso", notice="sso-policy-changed")
