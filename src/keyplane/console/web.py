"""The console's request plumbing: who is signed in, CSRF, cookies, rendering."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import unquote, urlencode, urlsplit

from fastapi import Depends, Form, Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from keyplane.core.errors import KeyplaneError
from keyplane.core.paths import CONSOLE_PREFIX
from keyplane.http.client_ip import client_ip
from keyplane.http.services import services_of
from keyplane.service.accounts.access import is_manager
from keyplane.service.accounts.sessions import SessionStage
from keyplane.service.keys.leaks import LeakRecord
from keyplane.service.records import Caller, SessionRecord
from keyplane.service.services import Services

PREFIX: Final = CONSOLE_PREFIX
SESSION_COOKIE: Final = "keyplane_session"
CSRF_COOKIE: Final = "keyplane_csrf"
HERE: Final = Path(__file__).parent

templates = Jinja2Templates(directory=HERE / "templates")

#: Messages a redirect may ask the next page to show (by code: no text comes from the URL).
NOTICES: Final = {
    "revoked": "Key revoked. Calls with it are refused from now on.",
    "disabled": "Key disabled. Enable it again at any time.",
    "enabled": "Key enabled.",
    "renamed": "Key renamed.",
    "invalid-name": "That name cannot be used: 1 to 200 characters, no control characters.",
    "project-created": "Project created.",
    "password-changed": "Password changed. Your other sessions were signed out.",
    "role-changed": "Role changed.",
    "member-removed": "Member removed.",
    "invitation-revoked": "Invitation revoked.",
    "signed-out": "You have signed out.",
    "session-ended": "Session signed out.",
    "other-sessions-ended": "Every other session of your account was signed out.",
    "use-sign-out": "To end this session, sign out.",
    "switched": "Switched organization.",
    "organization-created": "Organization created. You are its owner.",
    "password-reset": "Password changed. Sign in with the new password.",
    "verification-sent": "We sent a verification link to your address.",
    "notifications-saved": "Your mail preferences are saved.",
    "email-verified": "Your e-mail address is verified.",
    "totp-removed": "Authenticator app removed.",
    "totp-added": "Authenticator app set up.",
    "passkey-added": "Passkey added.",
    "passkey-removed": "Passkey removed.",
    "reauthenticated": "Confirmed. You can go on.",
    "mfa-policy-changed": "Security settings saved.",
    "key-policy-changed": "Key policies saved.",
    "sso-saved": "Single sign-on saved.",
    "sso-removed": "Single sign-on removed.",
    "sso-policy-changed": "Sign-in policy saved.",
    "webhook-saved": "Endpoint saved.",
    "webhook-enabled": "Endpoint enabled.",
    "webhook-disabled": "Endpoint disabled. Its pending deliveries were cancelled.",
    "webhook-test-sent": "Test event sent. It appears in the delivery log in a moment.",
    "webhook-deleted": "Endpoint deleted.",
    "webhook-replayed": "Delivery replayed. It appears in the delivery log in a moment.",
}
#: Shown on the sign-in page when a request came with a session that had ended.
SESSION_ENDED: Final = "Your session ended. Sign in again to go back to the page you were on."


class SignInRequired(KeyplaneError):
    """No live session: the visitor is sent to the sign-in page (told so when the
    browser held a session that has ended), or, with a session half-way through
    sign-in, to the step it still needs (``step_path``)."""

    def __init__(
        self, next_path: str, step_path: str | None = None, *, ended: bool = False
    ) -> None:
        super().__init__("sign in to continue")
        self.next_path = next_path
        self.step_path = step_path
        self.ended = ended


#: The page each pending session stage may reach (besides signing out).
STEP_PAGES: Final = {
    SessionStage.SECOND_FACTOR: "/signin/factor",
    SessionStage.ENROL_FACTOR: "/signin/enrol",
}


class CSRFFailed(KeyplaneError):
    """A state-changing request without a valid CSRF token, or from another site."""

    status = 403
    problem_type = "csrf-failed"


@dataclass(frozen=True)
class Visitor:
    """A signed-in person on this request."""

    session: SessionRecord
    token: str = field(repr=False)
    caller: Caller

    @property
    def csrf_token(self) -> str:
        return csrf_for_session(self.token)

    @property
    def is_manager(self) -> bool:
        return is_manager(self.caller)


def csrf_for_session(session_token: str) -> str:
    """The CSRF token bound to a session: unguessable without the session cookie."""
    return hmac.new(session_token.encode(), b"keyplane-console-csrf", hashlib.sha256).hexdigest()


def request_ip(request: Request) -> str | None:
    peer = request.client.host if request.client else None
    address = client_ip(
        peer, request.headers.get("x-forwarded-for"), services_of(request).settings.trusted_proxies
    )
    return str(address) if address is not None else None


def is_https(request: Request) -> bool:
    """HTTPS to the browser: the socket's scheme, or a trusted proxy's X-Forwarded-Proto."""
    if request.url.scheme == "https":
        return True
    proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    if proto != "https" or request.client is None:
        return False
    proxies = services_of(request).settings.trusted_proxies
    peer = client_ip(request.client.host, None, proxies)
    return peer is not None and any(peer in network for network in proxies)


def current_visitor(request: Request) -> Visitor | None:
    if hasattr(request.state, "visitor"):
        cached: Visitor | None = request.state.visitor
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    record = services_of(request).sessions.resolve(token) if token else None
    visitor = None
    if record is not None and token is not None:
        caller = record.caller(request_ip(request), request.headers.get("user-agent"))
        visitor = Visitor(record, token, caller)
    request.state.visitor = visitor
    return visitor


def pending_visitor(request: Request, stage: str) -> Visitor | None:
    """A person half-way through sign-in (``stage``), only for that step's pages."""
    token = request.cookies.get(SESSION_COOKIE)
    record = services_of(request).sessions.resolve(token, stages=(stage,)) if token else None
    if record is None or token is None:
        return None
    return Visitor(
        record, token, record.caller(request_ip(request), request.headers.get("user-agent"))
    )


def signed_in(request: Request) -> Visitor:
    visitor = current_visitor(request)
    if visitor is None:
        step = None
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            record = services_of(request).sessions.resolve(token, stages=tuple(STEP_PAGES))
            step = STEP_PAGES.get(record.stage) if record is not None else None
        raise SignInRequired(_local_path(request), step, ended=bool(token) and step is None)
    return visitor


VisitorDep = Annotated[Visitor, Depends(signed_in)]


def _check_origin(request: Request) -> None:
    """Refuse a state change another site started (belt and braces with the token)."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        raise CSRFFailed("cross-site request refused")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own and not (is_https(request) and origin == f"https://{request.url.netloc}"):
            raise CSRFFailed("request from another origin refused")


def csrf_visitor(request: Request, csrf_token: Annotated[str, Form()] = "") -> Visitor:
    """A signed-in visitor whose form carries their session's CSRF token."""
    visitor = signed_in(request)
    check_csrf(request, visitor, csrf_token)
    return visitor


def check_csrf(request: Request, visitor: Visitor, csrf_token: str) -> None:
    """The form's token must be the one bound to ``visitor``'s session (any stage)."""
    _check_origin(request)
    if not isinstance(csrf_token, str) or not hmac.compare_digest(
        csrf_token.encode(), visitor.csrf_token.encode()
    ):
        raise CSRFFailed("missing or wrong CSRF token")


CSRFVisitorDep = Annotated[Visitor, Depends(csrf_visitor)]


def anonymous_csrf(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
    """CSRF for forms used before a session exists (sign in, sign up, join): the form's
    token must equal the random one in the visitor's cookie (double submit)."""
    _check_origin(request)
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        raise CSRFFailed("missing or wrong CSRF token; reload the page and try again")


AnonymousCSRF = Annotated[None, Depends(anonymous_csrf)]


def anonymous_token(request: Request) -> str:
    """The double-submit token for this browser (made on first use)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(32)
    request.state.new_csrf_cookie = token
    return token


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(services_of(request).settings.session_lifetime.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    response.delete_cookie(CSRF_COOKIE, path=PREFIX)


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=PREFIX, httponly=True, samesite="lax", secure=is_https(request)
    )


#: How long the organization banner keeps showing a leak report.
LEAK_BANNER_DAYS: Final = 30


def recent_leaks(services: Services, organization_id: str) -> list[LeakRecord]:
    """Leak reports of the last ``LEAK_BANNER_DAYS`` days: the banner on every page."""
    since = services.clock() - timedelta(days=LEAK_BANNER_DAYS)
    return [leak for leak in services.leaks.leaks(organization_id) if leak.reported_at >= since]


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    visitor = getattr(request.state, "visitor", None)
    values: dict[str, Any] = {
        "visitor": visitor,
        "csrf_token": visitor.csrf_token if visitor else "",
        "now": services_of(request).clock(),
        "prefix": PREFIX,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "mail_enabled": services_of(request).email_links.mail_enabled,
        **(context or {}),
    }
    if visitor is not None and "leak_alert" not in values:
        values["leak_alert"] = recent_leaks(services_of(request), visitor.session.organization_id)
    if visitor is not None:
        services = services_of(request)
        values.setdefault("organizations", services.sessions.organizations(visitor.session.user_id))
        values["verify_banner"] = (
            not visitor.session.email_verified and services.email_links.mail_enabled
        )
    if visitor is None and "anonymous_csrf" not in values:
        values["anonymous_csrf"] = anonymous_token(request)
    response = templates.TemplateResponse(
        request, template, values, status_code=status_code, headers=dict(headers or {})
    )
    new_cookie = getattr(request.state, "new_csrf_cookie", None)
    if visitor is None and new_cookie and new_cookie != request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE,
            new_cookie,
            path=PREFIX,
            httponly=True,
            samesite="lax",
            secure=is_https(request),
        )
    return response


#: Where a visitor lands when a requested place to go back to is not acceptable.
DEFAULT_PAGE: Final = f"{PREFIX}/keys"
_MAX_TARGET_LENGTH: Final = 500
#: Printable ASCII without space, backslash, quotes or angle brackets: anything else
#: in a target must arrive percent-encoded.
_TARGET_CHARS: Final = frozenset(
    chr(code) for code in range(0x21, 0x7F) if chr(code) not in '\\"<>`{}|^'
)


def redirect_target(target: str | None) -> str | None:
    """``target`` if it is a console path on this origin that is safe to put in a
    ``Location`` header, else ``None``. Every console redirect goes through here.

    Refused: anything not starting ``/console/`` (absolute URLs, ``//host``,
    ``/\\host``), control characters (CR/LF would split the header), characters
    outside printable ASCII (a header is Latin-1; browsers read ``\\`` as ``/``),
    and dot segments or encoded slashes/backslashes/controls that a browser or
    proxy might decode into one of the above.
    """
    if not isinstance(target, str) or not target or len(target) > _MAX_TARGET_LENGTH:
        return None
    if not set(target) <= _TARGET_CHARS:
        return None
    if not target.startswith(PREFIX + "/") or "//" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.fragment:
        return None
    decoded = unquote(parts.path)
    if (
        "//" in decoded
        or "\\" in decoded
        or any(ord(char) < 0x20 or ord(char) == 0x7F for char in unquote(target))
        or any(segment in {".", ".."} for segment in decoded.split("/"))
    ):
        return None
    return target


def safe_next(path: str | None) -> str:
    """A place to go back to after signing in: ``path`` if acceptable, else the keys page."""
    return redirect_target(path) or DEFAULT_PAGE


def redirect(path: str, **query: str) -> RedirectResponse:
    """A 303 to a console path (after a form post), checked like every redirect."""
    target = f"{PREFIX}{path}"
    if query:
        target += "?" + urlencode(query)
    return RedirectResponse(safe_next(target), status_code=303)


def redirect_to(target: str | None) -> RedirectResponse:
    """A 303 to an already-built console URL (``next=``); the keys page if it is unsafe."""
    return RedirectResponse(safe_next(target), status_code=303)


#: For a form post that needs sudo mode: the page the form was on, by path prefix.
_FORM_PAGES: Final = (
    (re.compile(rf"^{PREFIX}/keys/(key_\w+)/"), f"{PREFIX}/keys/{{0}}"),
    (re.compile(rf"^{PREFIX}/keys$"), f"{PREFIX}/keys"),
    (re.compile(rf"^{PREFIX}/(members|invitations)(/|$)"), f"{PREFIX}/members"),
    (re.compile(rf"^{PREFIX}/account(/|$)"), f"{PREFIX}/account"),
    (re.compile(rf"^{PREFIX}/settings/security(/|$)"), f"{PREFIX}/settings/security"),
    (re.compile(rf"^{PREFIX}/settings/sso(/|$)"), f"{PREFIX}/settings/sso"),
    (re.compile(rf"^{PREFIX}/organizations(/|$)"), f"{PREFIX}/keys"),
    (re.compile(rf"^{PREFIX}/webhooks/(whe_\w+)(/|$)"), f"{PREFIX}/webhooks/{{0}}"),
    (re.compile(rf"^{PREFIX}/webhooks$"), f"{PREFIX}/webhooks"),
)


def page_of(request: Request) -> str:
    """Where to come back to after re-authenticating: the page itself for a GET, the
    page the form was on for a POST (the console sends no Referer)."""
    if request.method == "GET":
        return _local_path(request)
    path = request.url.path
    for pattern, page in _FORM_PAGES:
        found = pattern.match(path)
        if found:
            return page.format(*found.groups())
    return DEFAULT_PAGE


def _local_path(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query and request.method == "GET" else path


def utc_now() -> datetime:
    return datetime.now(UTC)
