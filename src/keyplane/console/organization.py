"""Projects, the audit log and members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from keyplane.console.keys import member_names
from keyplane.console.web import CSRFVisitorDep, VisitorDep, redirect, render
from keyplane.core.errors import InvalidInput, StateConflict
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.access import require_manager
from keyplane.service.records import Role

router = APIRouter()


# -- projects ----------------------------------------------------------------


def _projects_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    *,
    status_code: int = 200,
    **extra: object,
) -> Response:
    page = services.projects.list_projects(visitor.caller, limit=200)
    projects = sorted(page.items, key=lambda project: project.created_at)
    return render(
        request,
        "projects.html",
        {
            "section": "projects",
            "projects": projects,
            "names": member_names(services, visitor),
            **extra,
        },
        status_code=status_code,
    )


@router.get("/projects")
def projects_page(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    return _projects_page(request, services, visitor)


@router.post("/projects")
def create_project(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    name: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        project = services.projects.create_project(visitor.caller, name)
    except (InvalidInput, StateConflict) as error:
        return _projects_page(
            request, services, visitor, error=str(error), form_name=name, status_code=422
        )
    return redirect("/keys", project=project.id, notice="project-created")


# -- audit log ---------------------------------------------------------------


@router.get("/audit")
def audit_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    actor: str = Query("", max_length=80),
    action: str = Query("", max_length=60),
    key: str = Query("", max_length=40),
    cursor: str | None = Query(None, max_length=64),
) -> Response:
    require_manager(visitor.caller, "read the organization's audit log")
    names = member_names(services, visitor)
    by_email = {email: actor_name for actor_name, email in names.items()}
    actor_filter = by_email.get(actor.strip().lower(), actor.strip()) or None
    page = services.audit.events(
        visitor.caller,
        actor=actor_filter,
        action=action.strip() or None,
        key_id=key.strip() or None,
        cursor=cursor,
        limit=50,
    )
    return render(
        request,
        "audit.html",
        {
            "section": "audit",
            "events": page.items,
            "next_cursor": page.next_cursor,
            "names": names,
            "filters": {"actor": actor, "action": action, "key": key},
            "actions": AUDIT_ACTIONS,
        },
    )


AUDIT_ACTIONS = (
    "key.created",
    "key.updated",
    "key.disabled",
    "key.enabled",
    "key.rolled",
    "key.revoked",
    "key.leaked",
    "key.auto_disabled",
    "key.auto_revoked",
    "project.created",
    "organization.created",
    "member.added",
    "member.role_changed",
    "member.removed",
    "invitation.created",
    "invitation.revoked",
    "user.signed_in",
    "user.password_changed",
    "user.factor_added",
    "user.factor_removed",
    "user.recovery_codes_generated",
    "user.recovery_code_used",
    "user.second_factor_failed",
    "user.passkey_refused",
    "user.reauthenticated",
    "organization.mfa_policy_changed",
    "organization.key_policy_changed",
    "user.sso_failed",
    "user.sso_linked",
    "sso.configured",
    "sso.changed",
    "sso.removed",
    "organization.sso_policy_changed",
    "webhook.created",
    "webhook.updated",
    "webhook.deleted",
    "webhook.secret_rotated",
    "webhook.tested",
    "webhook.replayed",
)


# -- members -----------------------------------------------------------------


def _members_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    *,
    status_code: int = 200,
    **extra: object,
) -> Response:
    require_manager(visitor.caller, "manage members")
    return render(
        request,
        "members.html",
        {
            "section": "members",
            "members": services.members.list_members(visitor.caller),
            "invitations": services.invitations.list_invitations(visitor.caller),
            "roles": [role.value for role in Role],
            **extra,
        },
        status_code=status_code,
    )


@router.get("/members")
def members_page(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    return _members_page(request, services, visitor)


@router.post("/members/invite")
def invite(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    email: Annotated[str, Form(max_length=400)] = "",
    role: Annotated[str, Form(max_length=20)] = "member",
) -> Response:
    try:
        created = services.invitations.invite(visitor.caller, email, role)
    except (InvalidInput, StateConflict) as error:
        return _members_page(
            request, services, visitor, status_code=422, error=str(error), form_email=email
        )
    link = services.invitations.link(created.token, str(request.base_url))
    # The link is shown once, on this answer (no-store), like a key.
    return _members_page(
        request,
        services,
        visitor,
        status_code=201,
        invite_link=link,
        invited=created.record,
        invite_mailed=created.mailed,
    )


@router.post("/members/{user_id}/role")
def change_role(
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    user_id: str,
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    services.members.change_role(visitor.caller, user_id, role)
    return redirect("/members", notice="role-changed")


@router.post("/members/{user_id}/remove")
def remove_member(services: ServicesDep, visitor: CSRFVisitorDep, user_id: str) -> Response:
    services.members.remove(visitor.caller, user_id)
    return redirect("/members", notice="member-removed")


@router.post("/invitations/{invitation_id}/revoke")
def revoke_invitation(
    services: ServicesDep, visitor: CSRFVisitorDep, invitation_id: str
) -> Response:
    services.invitations.revoke_invitation(visitor.caller, invitation_id)
    return redirect("/members", notice="invitation-revoked")


# -- security settings ---------------------------------------------------------


def _security_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    *,
    status_code: int = 200,
    **extra: object,
) -> Response:
    require_manager(visitor.caller, "see the organization's security settings")
    return render(
        request,
        "settings_security.html",
        {
            "section": "security",
            "settings": services.security.settings(visitor.caller),
            "is_owner": visitor.session.role is Role.OWNER,
            **extra,
        },
        status_code=status_code,
    )


@router.get("/settings/security")
def security_page(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    return _security_page(request, services, visitor)


@router.post("/settings/security")
def change_security(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    require_mfa: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        services.security.set_require_mfa(visitor.caller, require_mfa == "on")
    except StateConflict as error:
        return _security_page(request, services, visitor, status_code=409, error=str(error))
    return redirect("/settings/security", notice="mfa-policy-changed")
