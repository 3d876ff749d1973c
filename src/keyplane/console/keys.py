"""The API Keys page, the key detail page, and every action on a key."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from keyplane.console.charts import usage_chart_svg
from keyplane.console.policies import DAY_CHOICES, expiry_choices, policy_expiry
from keyplane.console.usage import daily_usage
from keyplane.console.web import (
    CSRFVisitorDep,
    Visitor,
    VisitorDep,
    redirect,
    render,
)
from keyplane.core import scopes as scope_rules
from keyplane.core.errors import InvalidInput, NotPermitted, ObjectNotFound, StateConflict
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.access import MEMBER_UNGRANTABLE, can_manage_key
from keyplane.service.keys.lifecycle import KeyChanges
from keyplane.service.records import CreatedKey, KeyRecord, ProjectRecord, Role
from keyplane.service.services import Services

router = APIRouter()

StatusTab = Literal["active", "revoked", "all"]
GRACE_CHOICES: Final = (
    ("0", "Immediately"),
    ("3600", "1 hour"),
    ("86400", "24 hours"),
    ("604800", "7 days"),
)
ENV_VAR: Final = "KEYPLANE_API_KEY"


def _is_fetch(request: Request) -> bool:
    return request.headers.get("x-requested-with") == "fetch"


def _projects(services: Services, visitor: Visitor) -> list[ProjectRecord]:
    page = services.projects.list_projects(visitor.caller, limit=200)
    return sorted(page.items, key=lambda project: project.created_at)


def current_project(
    services: Services, visitor: Visitor, project_id: str | None
) -> tuple[ProjectRecord | None, list[ProjectRecord]]:
    """The project a page shows (the one asked for, else the oldest) and all of them.

    A project of another organization is :class:`ObjectNotFound` (a 404 page).
    """
    projects = _projects(services, visitor)
    if project_id:
        return services.projects.get_project(visitor.caller, project_id), projects
    return (projects[0] if projects else None), projects


def member_names(services: Services, visitor: Visitor) -> dict[str, str]:
    """``user:usr_...`` -> e-mail, for "created by" and audit actors."""
    return {f"user:{m.user_id}": m.email for m in services.members.list_members(visitor.caller)}


#: The scopes the create dialog offers as check boxes, by the API that checks them.
SCOPE_GROUPS: Final = (
    ("Keyplane API", (scope_rules.ALL, *scope_rules.MANAGEMENT_SCOPES)),
    ("Jobs API for IonQ clients (/v0.4)", scope_rules.JOB_SCOPES),
)


def scope_choices(visitor: Visitor) -> list[tuple[str, list[str]]]:
    """``(group title, scopes)`` the visitor may grant: a member gets no management scope."""
    groups = []
    for title, scopes in SCOPE_GROUPS:
        allowed = [
            scope
            for scope in scopes
            if visitor.session.role is not Role.MEMBER or scope not in MEMBER_UNGRANTABLE
        ]
        if allowed:
            groups.append((title, allowed))
    return groups


def _form_context(
    services: Services, visitor: Visitor, project: ProjectRecord | None, **extra: Any
) -> dict[str, Any]:
    choices, preselected = expiry_choices(services.key_policies.lifetime(visitor.caller))
    return {
        "project": project,
        "expiry_choices": choices,
        "default_expiry": preselected,
        "scope_choices": scope_choices(visitor),
        "form": {},
        **extra,
    }


@router.get("/keys")
def keys_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    project: str | None = Query(None, max_length=40),
    status: StatusTab = Query("active"),
    cursor: str | None = Query(None, max_length=64),
) -> Response:
    current, projects = current_project(services, visitor, project)
    page = None
    if current is not None:
        page = services.keys.list(
            visitor.caller,
            current.id,
            revoked={"active": False, "revoked": True, "all": None}[status],
            cursor=cursor,
        )
    keys = page.items if page else ()
    return render(
        request,
        "keys.html",
        _form_context(
            services,
            visitor,
            current,
            section="keys",
            projects=projects,
            keys=keys,
            status=status,
            next_cursor=page.next_cursor if page else None,
            names=member_names(services, visitor),
            can_manage={key.id: can_manage_key(visitor.caller, key.created_by) for key in keys},
            callers=services.signals.recent_callers(key.id for key in keys),
            leaked={
                leak.key_id
                for leak in services.leaks.leaks(
                    visitor.caller.organization_id, [key.id for key in keys]
                )
            },
        ),
    )


@router.get("/keys/new")
def new_key_page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    project: str | None = Query(None, max_length=40),
    scope: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The create form on a page of its own; ``scope=`` ticks scopes in advance
    (the Jobs page links here with the job scopes)."""
    current, _ = current_project(services, visitor, project)
    if current is None:
        raise ObjectNotFound("project", project or "none")
    # Only ticks check boxes the visitor is offered; nothing else is shown or kept.
    offered = {choice for _, scopes in scope_choices(visitor) for choice in scopes}
    form = {"scopes": [choice for choice in scope or [] if choice in offered]}
    return render(
        request,
        "key_new.html",
        _form_context(services, visitor, current, section="keys", form=form),
    )


def parse_expiry(choice: str, custom: str, now: datetime) -> datetime | None:
    """The expiry a form chose: never, N days from now, or 00:00 UTC of a custom date."""
    if choice == "never":
        return None
    if choice == "custom":
        try:
            chosen = date.fromisoformat(custom.strip())
        except ValueError:
            raise InvalidInput("pick an expiry date", field="expires_on") from None
        return datetime.combine(chosen, time(0), tzinfo=UTC)
    if choice in {str(days) for days in DAY_CHOICES}:
        return now + timedelta(days=int(choice))
    raise InvalidInput("pick an expiry", field="expires")


def _chosen_expiry(
    services: Services, visitor: Visitor, choice: str, custom: str
) -> datetime | None:
    """The form's expiry; an empty choice is the one the dialog preselects."""
    policy = services.key_policies.lifetime(visitor.caller)
    choice = choice or expiry_choices(policy)[1]
    chosen, expiry = policy_expiry(choice, policy, services.clock())
    return expiry if chosen else parse_expiry(choice, custom, services.clock())


def parse_scopes(checked: list[str], other: str) -> list[str]:
    extra = [part for part in other.replace(",", " ").split() if part]
    return [*checked, *extra]


@router.post("/keys")
def create_key(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    project: Annotated[str, Form(max_length=40)],
    name: Annotated[str, Form(max_length=2000)] = "",
    expires: Annotated[str, Form(max_length=20)] = "",
    expires_on: Annotated[str, Form(max_length=20)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=200)] = None,
    other_scopes: Annotated[str, Form(max_length=2000)] = "",
    canary: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    current = services.projects.get_project(visitor.caller, project)
    form = {
        "canary": bool(canary),
        "name": name,
        "expires": expires,
        "expires_on": expires_on,
        "scopes": scopes or [],
        "other_scopes": other_scopes,
    }
    try:
        created = services.keys.create(
            visitor.caller,
            current.id,
            name=name,
            scopes=parse_scopes(scopes or [], other_scopes),
            expires_at=_chosen_expiry(services, visitor, expires, expires_on),
            canary=bool(canary),
        )
    except (InvalidInput, NotPermitted) as error:
        template = "_create_form.html" if _is_fetch(request) else "key_new.html"
        return render(
            request,
            template,
            _form_context(services, visitor, current, section="keys", form=form, error=str(error)),
            status_code=422 if isinstance(error, InvalidInput) else 403,
        )
    return _reveal(request, created, current, title="Your new API key")


def _reveal(
    request: Request, created: CreatedKey, project: ProjectRecord, *, title: str
) -> Response:
    """The one and only time the key's value is shown; ``no-store`` comes with every page."""
    context = {
        "section": "keys",
        "created": created.record,
        "secret": created.secret.reveal(),
        "env_var": ENV_VAR,
        "project": project,
        "title": title,
    }
    template = "_reveal.html" if _is_fetch(request) else "key_reveal.html"
    return render(request, template, context, status_code=201)


@router.get("/keys/{key_id}")
def key_page(request: Request, services: ServicesDep, visitor: VisitorDep, key_id: str) -> Response:
    key = services.keys.get(visitor.caller, key_id)
    project = services.projects.get_project(visitor.caller, key.project_id)
    points = daily_usage(services, visitor.caller, key.id, days=30)
    events = services.audit.events(visitor.caller, key_id=key.id, limit=50)
    return render(
        request,
        "key_detail.html",
        {
            "section": "keys",
            "key": key,
            "project": project,
            "chart": usage_chart_svg(points) if points else None,
            "events": events.items,
            "names": member_names(services, visitor),
            "can_manage": can_manage_key(visitor.caller, key.created_by),
            "grace_choices": GRACE_CHOICES,
            "leaks": services.leaks.leaks(visitor.caller.organization_id, [key.id]),
            "callers": services.signals.callers(visitor.caller, key.id),
            "recent_callers": services.signals.recent_callers([key.id]).get(key.id, 0),
        },
    )


def _key_for_action(services: Services, visitor: Visitor, key_id: str) -> KeyRecord:
    key = services.keys.get(visitor.caller, key_id)
    if not can_manage_key(visitor.caller, key.created_by):
        raise NotPermitted("INSUFFICIENT_ROLE", "a member can change only the keys they created")
    return key


@router.get("/keys/{key_id}/revoke")
def revoke_page(
    request: Request, services: ServicesDep, visitor: VisitorDep, key_id: str
) -> Response:
    key = _key_for_action(services, visitor, key_id)
    return render(
        request,
        "key_confirm.html",
        {
            "section": "keys",
            "key": key,
            "action": "revoke",
            "recent_callers": services.signals.recent_callers([key.id]).get(key.id, 0),
        },
    )


@router.post("/keys/{key_id}/revoke")
def revoke_key(services: ServicesDep, visitor: CSRFVisitorDep, key_id: str) -> Response:
    key = services.keys.revoke(visitor.caller, key_id)
    return redirect("/keys", project=key.project_id, notice="revoked")


@router.get("/keys/{key_id}/roll")
def roll_page(
    request: Request, services: ServicesDep, visitor: VisitorDep, key_id: str
) -> Response:
    key = _key_for_action(services, visitor, key_id)
    return render(
        request,
        "key_confirm.html",
        {"section": "keys", "key": key, "action": "roll", "grace_choices": GRACE_CHOICES},
    )


@router.post("/keys/{key_id}/roll")
def roll_key(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    key_id: str,
    grace_seconds: Annotated[str, Form(max_length=10)] = "86400",
) -> Response:
    allowed = {value for value, _ in GRACE_CHOICES}
    if grace_seconds not in allowed:
        raise InvalidInput("pick a grace period", field="grace_seconds")
    created = services.keys.roll(
        visitor.caller, key_id, grace=timedelta(seconds=int(grace_seconds))
    )
    project = services.projects.get_project(visitor.caller, created.record.project_id)
    return _reveal(request, created, project, title="Your rolled API key")


@router.post("/keys/{key_id}/disable")
def disable_key(services: ServicesDep, visitor: CSRFVisitorDep, key_id: str) -> Response:
    services.keys.update(visitor.caller, key_id, KeyChanges(enabled=False))
    return redirect(f"/keys/{key_id}", notice="disabled")


@router.post("/keys/{key_id}/enable")
def enable_key(services: ServicesDep, visitor: CSRFVisitorDep, key_id: str) -> Response:
    services.keys.update(visitor.caller, key_id, KeyChanges(enabled=True))
    return redirect(f"/keys/{key_id}", notice="enabled")


@router.post("/keys/{key_id}/rename")
def rename_key(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    key_id: str,
    name: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        services.keys.update(visitor.caller, key_id, KeyChanges(name=name))
    except (InvalidInput, StateConflict):
        return redirect(f"/keys/{key_id}", notice="invalid-name")
    return redirect(f"/keys/{key_id}", notice="renamed")
