"""Key policies in the console: the settings page (owners and admins), its preview (the
dry run, nothing saved) and the create dialog's expiry choices, which follow the policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from keyplane.console.web import CSRFVisitorDep, VisitorDep, redirect, render
from keyplane.core.errors import InvalidInput
from keyplane.http.services import ServicesDep
from keyplane.service.accounts.access import require_manager
from keyplane.service.events.policies import DAY, KeyPolicy, describe_seconds

router = APIRouter()

PAGE: Final = "/settings/key-policies"
#: The create dialog's fixed choices, in days (as before the policies).
DAY_CHOICES: Final = (30, 90, 365)


# -- the create dialog --------------------------------------------------------------


def expiry_choices(policy: KeyPolicy) -> tuple[tuple[tuple[str, str], ...], str]:
    """The create dialog's expiry choices under ``policy`` and the one preselected:
    the day counts within the maximum, the policy's default and maximum, a custom date;
    "Never" only when neither a maximum nor a default applies."""
    maximum, default = policy.max_lifetime_seconds, policy.default_expiry_seconds
    choices: list[tuple[str, str]] = []
    if not policy.limits_lifetime:
        choices.append(("never", "Never"))
    if default is not None:
        choices.append(("default", f"Organization default ({describe_seconds(default)})"))
    choices += [
        (str(days), f"{days} days")
        for days in DAY_CHOICES
        if maximum is None or days * DAY <= maximum
    ]
    if maximum is not None:
        choices.append(("max", f"Organization maximum ({describe_seconds(maximum)})"))
    choices.append(("custom", "Custom date"))
    preselected = "default" if default is not None else "max" if maximum is not None else "never"
    return tuple(choices), preselected


def policy_expiry(choice: str, policy: KeyPolicy, now: datetime) -> tuple[bool, datetime | None]:
    """``(True, expiry)`` for the policy's own choices ("default": none asked, the
    service gives the default; "max"), else ``(False, None)``."""
    if choice == "default":
        return True, None
    if choice == "max" and policy.max_lifetime_seconds is not None:
        return True, now + timedelta(seconds=policy.max_lifetime_seconds)
    return False, None


# -- the settings page ------------------------------------------------------------------


def _days(text: str, field: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 6:
        raise InvalidInput(f"{field.replace('_', ' ')}: a whole number of days", field=field)
    return int(text)


def _policy_from_form(form: dict[str, str]) -> KeyPolicy:
    lifetime = _days(form["max_lifetime_days"], "max_lifetime_days")
    default = _days(form["default_expiry_days"], "default_expiry_days")
    return KeyPolicy(
        max_lifetime_seconds=lifetime * DAY if lifetime is not None else None,
        default_expiry_seconds=default * DAY if default is not None else None,
        stale_days=_days(form["stale_days"], "stale_days"),
        stale_disable=form["stale_disable"] == "on",
        stale_revoke_days=_days(form["stale_revoke_days"], "stale_revoke_days"),
    )


def _form_of(policy: KeyPolicy) -> dict[str, str]:
    def days(seconds: int | None) -> str:
        return "" if seconds is None else f"{seconds / DAY:g}"

    return {
        "max_lifetime_days": days(policy.max_lifetime_seconds),
        "default_expiry_days": days(policy.default_expiry_seconds),
        "stale_days": "" if policy.stale_days is None else str(policy.stale_days),
        "stale_disable": "on" if policy.stale_disable else "",
        "stale_revoke_days": ""
        if policy.stale_revoke_days is None
        else str(policy.stale_revoke_days),
    }


def _page(
    request: Request,
    services: ServicesDep,
    visitor: VisitorDep,
    *,
    form: dict[str, str] | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    require_manager(visitor.caller, "see the organization's key policies")
    saved = services.key_policies.policy(visitor.caller)
    return render(
        request,
        "settings_key_policies.html",
        {"section": "key-policies", "form": form or _form_of(saved), **extra},
        status_code=status_code,
    )


@router.get(PAGE)
def key_policies_page(request: Request, services: ServicesDep, visitor: VisitorDep) -> Response:
    return _page(request, services, visitor)


PolicyField = Annotated[str, Form(max_length=20)]


@router.post(PAGE)
def save_key_policies(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    max_lifetime_days: PolicyField = "",
    default_expiry_days: PolicyField = "",
    stale_days: PolicyField = "",
    stale_disable: PolicyField = "",
    stale_revoke_days: PolicyField = "",
) -> Response:
    form = {
        "max_lifetime_days": max_lifetime_days,
        "default_expiry_days": default_expiry_days,
        "stale_days": stale_days,
        "stale_disable": stale_disable,
        "stale_revoke_days": stale_revoke_days,
    }
    require_manager(visitor.caller, "change the organization's key policies")
    try:
        services.key_policies.set_policy(visitor.caller, _policy_from_form(form))
    except InvalidInput as error:
        return _page(request, services, visitor, form=form, status_code=422, error=str(error))
    return redirect(PAGE, notice="key-policy-changed")


@router.post(PAGE + "/preview")
def preview_key_policies(
    request: Request,
    services: ServicesDep,
    visitor: CSRFVisitorDep,
    max_lifetime_days: PolicyField = "",
    default_expiry_days: PolicyField = "",
    stale_days: PolicyField = "",
    stale_disable: PolicyField = "",
    stale_revoke_days: PolicyField = "",
) -> Response:
    form = {
        "max_lifetime_days": max_lifetime_days,
        "default_expiry_days": default_expiry_days,
        "stale_days": stale_days,
        "stale_disable": stale_disable,
        "stale_revoke_days": stale_revoke_days,
    }
    require_manager(visitor.caller, "preview the organization's key policies")
    try:
        preview = services.key_policies.dry_run(visitor.caller, _policy_from_form(form))
    except InvalidInput as error:
        return _page(request, services, visitor, form=form, status_code=422, error=str(error))
    return _page(request, services, visitor, form=form, preview=preview)
