"""The signed-in person's own account: their organizations (the switcher), their
sessions, the verification of their address. Passwords are in ``auth.py``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from keyplane.console.formatting import span
from keyplane.console.web import (
    DEFAULT_PAGE,
    CSRFVisitorDep,
    Visitor,
    VisitorDep,
    redirect,
    redirect_to,
    render,
    safe_next,
)
from keyplane.core.errors import InvalidInput, ObjectNotFound
from keyplane.core.events import EVENT_TYPES
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.members import SignupClosed, SignupPolicy
from keyplane.service.events.notify import MAILED
from keyplane.service.services import Services

router = APIRouter()


def account_context(services: Services, visitor: Visitor, **extra: Any) -> dict[str, Any]:
    """What the account page shows besides its forms (``extra``: an error, a link)."""
    return {
        "section": "account",
        "factors": services.factors.status(visitor.session.user_id),
        "sessions": services.sessions.sessions_of(visitor.session),
        "mail_enabled": services.email_links.mail_enabled,
        "idle_words": span(services.settings.session_idle_timeout),
        "lifetime_words": span(services.settings.session_lifetime),
        **extra,
    }


@router.post("/account/verify-email")
def send_verification(request: Request, services: ServicesDep, visitor: CSRFVisitorDep) -> Response:
    """Send (again) the link that verifies the signed-in person's address; without a
    mail server the link is shown here, to the only person who asked for it."""
    link = services.email_links.send_verification(
        visitor.session.user_id, actor=visitor.caller.actor
    )
    if link.mailed:
        return redirect("/account", notice="verification-sent")
    return render(
        request,
        "account.html",
        account_context(services, visitor, verification_link=link.url),
    )


@router.post("/account/sessions/{session_id}/end")
def end_session(services: ServicesDep, visitor: CSRFVisitorDep, session_id: str) -> Response:
    if session_id == visitor.session.id:
        return redirect("/account", notice="use-sign-out")
    services.sessions.end_session(visitor.session, session_id, actor=visitor.caller.actor)
    return redirect("/account", notice="session-ended")


@router.post("/account/sessions/end-others")
def end_other_sessions(services: ServicesDep, visitor: CSRFVisitorDep) -> Response:
    services.sessions.end_others(visitor.session, actor=visitor.caller.actor)
    return redirect("/account", notice="other-sessions-ended")


@router.post("/organizations/switch")
def switch_organization(
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    organization: Annotated[str, Form(max_length=60)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Act in another of one's organizations. The page to come back to is kept only
    if it names no object (an object of one organization is not found in another)."""
    try:
        services.sessions.switch(visitor.session, organization, actor=visitor.caller.actor)
    except ObjectNotFound:
        return redirect_to(DEFAULT_PAGE)
    section = safe_next(next).split("?", 1)[0].rstrip("/")
    return redirect_to(f"{section if section in _SECTIONS else DEFAULT_PAGE}?notice=switched")


#: Pages that show the same thing in every organization, kept across a switch.
_SECTIONS = frozenset(
    f"/console/{name}" for name in ("keys", "jobs", "projects", "audit", "members", "account")
)


@router.get("/organizations/new")
def new_organization_page(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    return render(
        request,
        "organization_new.html",
        {"section": "account", "may_create": services.members.policy is SignupPolicy.OPEN},
    )


@router.post("/organizations")
def create_organization(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    name: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    try:
        organization_id = services.members.create_organization(
            visitor.session, name, actor=visitor.caller.actor
        )
    except (InvalidInput, SignupClosed) as error:
        return render(
            request,
            "organization_new.html",
            {
                "section": "account",
                "may_create": not isinstance(error, SignupClosed),
                "error": str(error),
                "name": name,
            },
            status_code=422 if isinstance(error, InvalidInput) else 403,
        )
    services.sessions.switch(visitor.session, organization_id, actor=visitor.caller.actor)
    return redirect("/keys", notice="organization-created")


@router.get("/account/notifications")
def notifications_page(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    """Which events mail the signed-in person in this organization."""
    muted = services.notifications.muted(visitor.caller, visitor.session.user_id)
    return render(
        request,
        "notifications.html",
        {
            "section": "account",
            "choices": [(name, EVENT_TYPES[name].description) for name in MAILED],
            "muted": muted,
        },
    )


@router.post("/account/notifications")
def save_notifications(
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    mailed: Annotated[list[str] | None, Form(max_length=100)] = None,
) -> Response:
    """Save the preferences: every mailed type left unticked is muted."""
    wanted = set(mailed or [])
    services.notifications.set_muted(
        visitor.caller, visitor.session.user_id, [name for name in MAILED if name not in wanted]
    )
    return redirect("/account/notifications", notice="notifications-saved")
