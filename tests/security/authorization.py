"""The authorization matrix: who gets what from every management endpoint and console action.

This module is the one place the expected answers live. ``test_authorization_matrix``
checks the running app against it (and fails for any route it does not list), and
``render_tables()`` writes the tables in docs/security.md (a test checks the doc is
current; ``python -m tests.security.authorization`` rewrites it).

To add an endpoint: append an ``ApiEndpoint`` (or a ``ConsoleAction``) below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from keyplane.core import scopes

# -- the REST API ----------------------------------------------------------------------

#: The scopes of the management API; the matrix tries a key holding each one alone.
MANAGEMENT_SCOPES: Final = (
    scopes.PROJECTS_READ,
    scopes.PROJECTS_WRITE,
    scopes.KEYS_READ,
    scopes.KEYS_WRITE,
    scopes.KEYS_VERIFY,
    scopes.AUDIT_READ,
    scopes.WEBHOOKS_READ,
    scopes.WEBHOOKS_WRITE,
    scopes.POLICIES_READ,
    scopes.POLICIES_WRITE,
    scopes.EVENTS_READ,
)

#: Who calls. ``scope:X`` is a live key of the organization holding only X.
API_SUBJECTS: Final = (
    "*",
    *(f"scope:{scope}" for scope in MANAGEMENT_SCOPES),
    "other-org",
    "revoked",
    "expired",
    "disabled",
    "none",
)
API_SUBJECT_LABELS: Final = {
    "*": "key `*`",
    **{f"scope:{scope}": f"`{scope}` only" for scope in MANAGEMENT_SCOPES},
    "other-org": "other org's `*` key",
    "revoked": "revoked key",
    "expired": "expired key",
    "disabled": "disabled key",
    "none": "no key",
}

#: ``object``: the path names an object of the organization (another organization's
#: key gets 404); ``collection``: the caller's own organization (another
#: organization's key gets its own answer); ``signature``: not a key endpoint.
Target = Literal["object", "collection", "signature"]


@dataclass(frozen=True)
class ApiEndpoint:
    method: str
    path: str
    scope: str | None
    target: Target
    success: int
    note: str = ""

    def expected(self, subject: str) -> int:
        if self.target == "signature":
            return 401  # keys grant nothing here: GitHub's signature is the credential
        if subject in ("revoked", "expired", "disabled", "none"):
            return 401
        if subject == "other-org":
            return 404 if self.target == "object" else self.success
        if subject.startswith("scope:"):
            held = subject.removeprefix("scope:")
            if self.scope is not None and not scopes.grants((held,), self.scope):
                return 403
        return self.success


API_ENDPOINTS: Final = (
    ApiEndpoint("GET", "/api/v1/whoami", None, "collection", 200),
    ApiEndpoint(
        "POST",
        "/api/v1/verify",
        scopes.KEYS_VERIFY,
        "collection",
        200,
        "another organization's key answers valid=false, NOT_FOUND",
    ),
    ApiEndpoint("GET", "/api/v1/projects", scopes.PROJECTS_READ, "collection", 200),
    ApiEndpoint("POST", "/api/v1/projects", scopes.PROJECTS_WRITE, "collection", 201),
    ApiEndpoint("GET", "/api/v1/projects/{project_id}", scopes.PROJECTS_READ, "object", 200),
    ApiEndpoint("GET", "/api/v1/projects/{project_id}/keys", scopes.KEYS_READ, "object", 200),
    ApiEndpoint("POST", "/api/v1/projects/{project_id}/keys", scopes.KEYS_WRITE, "object", 201),
    ApiEndpoint("GET", "/api/v1/keys/{key_id}", scopes.KEYS_READ, "object", 200),
    ApiEndpoint("PATCH", "/api/v1/keys/{key_id}", scopes.KEYS_WRITE, "object", 200),
    ApiEndpoint("DELETE", "/api/v1/keys/{key_id}", scopes.KEYS_WRITE, "object", 200),
    ApiEndpoint("POST", "/api/v1/keys/{key_id}/roll", scopes.KEYS_WRITE, "object", 201),
    ApiEndpoint("GET", "/api/v1/keys/{key_id}/usage", scopes.KEYS_READ, "object", 200),
    ApiEndpoint("GET", "/api/v1/audit-events", scopes.AUDIT_READ, "collection", 200),
    ApiEndpoint("GET", "/api/v1/events", scopes.EVENTS_READ, "collection", 200),
    ApiEndpoint("GET", "/api/v1/event-types", None, "collection", 200),
    ApiEndpoint("GET", "/api/v1/keys/{key_id}/callers", scopes.KEYS_READ, "object", 200),
    ApiEndpoint("GET", "/api/v1/policies", scopes.POLICIES_READ, "collection", 200),
    ApiEndpoint(
        "PATCH",
        "/api/v1/policies",
        scopes.POLICIES_WRITE,
        "collection",
        200,
        "another organization's key changes its own organization's policies",
    ),
    ApiEndpoint(
        "POST",
        "/api/v1/policies/dry-run",
        scopes.POLICIES_READ,
        "collection",
        200,
        "nothing is saved; another organization's key previews its own keys",
    ),
    ApiEndpoint("GET", "/api/v1/webhooks", scopes.WEBHOOKS_READ, "collection", 200),
    ApiEndpoint("POST", "/api/v1/webhooks", scopes.WEBHOOKS_WRITE, "collection", 201),
    ApiEndpoint("GET", "/api/v1/webhooks/{endpoint_id}", scopes.WEBHOOKS_READ, "object", 200),
    ApiEndpoint("PATCH", "/api/v1/webhooks/{endpoint_id}", scopes.WEBHOOKS_WRITE, "object", 200),
    ApiEndpoint("DELETE", "/api/v1/webhooks/{endpoint_id}", scopes.WEBHOOKS_WRITE, "object", 204),
    ApiEndpoint(
        "POST", "/api/v1/webhooks/{endpoint_id}/rotate-secret", scopes.WEBHOOKS_WRITE, "object", 200
    ),
    ApiEndpoint(
        "POST", "/api/v1/webhooks/{endpoint_id}/test", scopes.WEBHOOKS_WRITE, "object", 202
    ),
    ApiEndpoint(
        "GET", "/api/v1/webhooks/{endpoint_id}/deliveries", scopes.WEBHOOKS_READ, "object", 200
    ),
    ApiEndpoint(
        "GET", "/api/v1/webhook-deliveries/{delivery_id}", scopes.WEBHOOKS_READ, "object", 200
    ),
    ApiEndpoint(
        "POST",
        "/api/v1/webhook-deliveries/{delivery_id}/replay",
        scopes.WEBHOOKS_WRITE,
        "object",
        202,
    ),
    ApiEndpoint(
        "POST",
        "/api/v1/leaks/github",
        None,
        "signature",
        200,
        "GitHub's signature, not a key: unsigned requests get 401, bad signatures 403",
    ),
)


# -- the console ---------------------------------------------------------------------

CONSOLE_SUBJECTS: Final = ("owner", "admin", "member", "other-org", "anonymous")
CONSOLE_SUBJECT_LABELS: Final = {
    "owner": "owner",
    "admin": "admin",
    "member": "member",
    "other-org": "owner of another org",
    "anonymous": "no session",
}


@dataclass(frozen=True)
class ConsoleAction:
    """A console route and the status each subject gets. Targets are the organization's:
    a key created by someone else (so a member does not manage it), a member, an
    invitation. 303 for ``anonymous`` is the redirect to the sign-in page."""

    method: str
    path: str
    answers: tuple[int, int, int, int, int] = field()
    note: str = ""

    def expected(self, subject: str) -> int:
        return self.answers[CONSOLE_SUBJECTS.index(subject)]


CONSOLE_ACTIONS: Final = (
    ConsoleAction("GET", "/console/keys", (200, 200, 200, 200, 303)),
    ConsoleAction("GET", "/console/keys/new", (200, 200, 200, 200, 303)),
    ConsoleAction("POST", "/console/keys", (201, 201, 201, 404, 303), "in this org's project"),
    ConsoleAction("GET", "/console/keys/{key_id}", (200, 200, 200, 404, 303)),
    ConsoleAction("GET", "/console/keys/{key_id}/revoke", (200, 200, 403, 404, 303)),
    ConsoleAction("POST", "/console/keys/{key_id}/revoke", (303, 303, 403, 404, 303)),
    ConsoleAction("GET", "/console/keys/{key_id}/roll", (200, 200, 403, 404, 303)),
    ConsoleAction("POST", "/console/keys/{key_id}/roll", (201, 201, 403, 404, 303)),
    ConsoleAction("POST", "/console/keys/{key_id}/disable", (303, 303, 403, 404, 303)),
    ConsoleAction("POST", "/console/keys/{key_id}/enable", (303, 303, 403, 404, 303)),
    ConsoleAction("POST", "/console/keys/{key_id}/rename", (303, 303, 403, 404, 303)),
    ConsoleAction("GET", "/console/jobs", (200, 200, 200, 200, 303)),
    ConsoleAction("GET", "/console/projects", (200, 200, 200, 200, 303)),
    ConsoleAction("POST", "/console/projects", (303, 303, 403, 303, 303), "other org: its own"),
    ConsoleAction("GET", "/console/audit", (200, 200, 403, 200, 303), "other org: its own"),
    ConsoleAction("GET", "/console/members", (200, 200, 403, 200, 303), "other org: its own"),
    ConsoleAction("POST", "/console/members/invite", (201, 201, 403, 201, 303)),
    ConsoleAction("POST", "/console/members/{user_id}/role", (303, 303, 403, 404, 303)),
    ConsoleAction("POST", "/console/members/{user_id}/remove", (303, 303, 403, 404, 303)),
    ConsoleAction("POST", "/console/invitations/{invitation_id}/revoke", (303, 303, 403, 404, 303)),
    ConsoleAction(
        "GET", "/console/settings/security", (200, 200, 403, 200, 303), "other org: its own"
    ),
    ConsoleAction(
        "POST", "/console/settings/security", (303, 403, 403, 303, 303), "other org: its own"
    ),
    ConsoleAction(
        "GET", "/console/settings/key-policies", (200, 200, 403, 200, 303), "other org: its own"
    ),
    ConsoleAction(
        "POST",
        "/console/settings/key-policies",
        (303, 303, 403, 303, 303),
        "an empty form (no policy); other org: its own",
    ),
    ConsoleAction(
        "POST",
        "/console/settings/key-policies/preview",
        (200, 200, 403, 200, 303),
        "nothing saved; other org: its own keys",
    ),
    ConsoleAction("GET", "/console/settings/sso", (200, 403, 403, 200, 303), "other org: its own"),
    ConsoleAction(
        "POST",
        "/console/settings/sso",
        (422, 403, 403, 422, 303),
        "an empty form; other org: its own",
    ),
    ConsoleAction(
        "POST", "/console/settings/sso/remove", (404, 403, 403, 404, 303), "none set up: 404"
    ),
    ConsoleAction(
        "POST", "/console/settings/sso/policy", (303, 403, 403, 303, 303), "other org: its own"
    ),
    ConsoleAction("GET", "/console/webhooks", (200, 200, 403, 200, 303), "other org: its own"),
    ConsoleAction("POST", "/console/webhooks", (201, 201, 403, 201, 303), "other org: its own"),
    ConsoleAction("GET", "/console/webhooks/{endpoint_id}", (200, 200, 403, 404, 303)),
    ConsoleAction("POST", "/console/webhooks/{endpoint_id}", (303, 303, 403, 404, 303)),
    ConsoleAction("POST", "/console/webhooks/{endpoint_id}/enable", (303, 303, 403, 404, 303)),
    ConsoleAction("POST", "/console/webhooks/{endpoint_id}/disable", (303, 303, 403, 404, 303)),
    ConsoleAction("POST", "/console/webhooks/{endpoint_id}/rotate", (200, 200, 403, 404, 303)),
    ConsoleAction("POST", "/console/webhooks/{endpoint_id}/test", (303, 303, 403, 404, 303)),
    ConsoleAction("POST", "/console/webhooks/{endpoint_id}/delete", (303, 303, 403, 404, 303)),
    ConsoleAction("GET", "/console/webhook-deliveries/{delivery_id}", (200, 200, 403, 404, 303)),
    ConsoleAction(
        "POST", "/console/webhook-deliveries/{delivery_id}/replay", (303, 303, 403, 404, 303)
    ),
)

#: Console routes that are not actions on an organization's data, and why.
CONSOLE_EXEMPT: Final = {
    ("GET", "/console/"): "redirects to /console/keys",
    ("GET", "/console/signin"): "public: the sign-in form",
    ("POST", "/console/signin"): "public: throttled, CSRF double submit",
    ("GET", "/console/signup"): "public: KEYPLANE_SIGNUP decides",
    ("POST", "/console/signup"): "public: KEYPLANE_SIGNUP decides",
    ("GET", "/console/join"): "public: needs an invitation token",
    ("POST", "/console/join"): "public: needs an invitation token",
    ("POST", "/console/signout"): "the visitor's own session",
    ("GET", "/console/account"): "the visitor's own account",
    ("POST", "/console/account/password"): "the visitor's own account (current password)",
    ("GET", "/console/forgot-password"): "public: the same answer for every address",
    ("POST", "/console/forgot-password"): "public: the same answer for every address, throttled",
    ("GET", "/console/reset-password"): "public: needs a reset token",
    ("POST", "/console/reset-password"): "public: needs a reset token",
    ("GET", "/console/verify-email"): "public: needs a verification token",
    ("POST", "/console/verify-email"): "public: needs a verification token",
    ("POST", "/console/account/verify-email"): "the visitor's own address",
    ("GET", "/console/account/notifications"): "the visitor's own mail preferences",
    ("POST", "/console/account/notifications"): "the visitor's own mail preferences",
    ("POST", "/console/account/sessions/{session_id}/end"): "the visitor's own sessions (else 404)",
    ("POST", "/console/account/sessions/end-others"): "the visitor's own sessions",
    ("POST", "/console/organizations/switch"): "the visitor's own memberships (else refused)",
    (
        "GET",
        "/console/organizations/new",
    ): "a new organization of one's own; KEYPLANE_SIGNUP decides",
    ("POST", "/console/organizations"): "a new organization of one's own; KEYPLANE_SIGNUP decides",
    ("GET", "/console/signin/factor"): "a session half-way through sign-in: its own second factor",
    ("POST", "/console/signin/factor"): "a session half-way through sign-in: its own second factor",
    ("POST", "/console/signin/factor/passkey"): "a pending session: its own passkey",
    ("POST", "/console/signin/factor/passkey/options"): "a pending session: its own passkey",
    ("GET", "/console/signin/enrol"): "a session that must enrol a factor: its own",
    ("POST", "/console/signin/enrol/totp"): "a session that must enrol a factor: its own",
    ("POST", "/console/signin/enrol/confirm"): "a session that must enrol a factor: its own",
    ("POST", "/console/signin/enrol/passkey"): "a session that must enrol a factor: its own",
    (
        "POST",
        "/console/signin/enrol/passkey/options",
    ): "a session that must enrol a factor: its own",
    ("POST", "/console/signin/passkey"): "public: a passkey's signature signs its owner in",
    ("POST", "/console/signin/passkey/options"): "public: a challenge, single-use",
    ("GET", "/console/sso"): "public: the same answer for every unknown domain",
    ("POST", "/console/sso/start"): "public: the same answer for every unknown domain",
    ("GET", "/console/sso/callback"): "public: needs the browser's single-use challenge",
    ("GET", "/console/sudo"): "the visitor's own re-authentication",
    ("POST", "/console/sudo"): "the visitor's own re-authentication, throttled",
    ("POST", "/console/account/totp"): "the visitor's own factors (sudo)",
    ("POST", "/console/account/totp/confirm"): "the visitor's own factors",
    ("POST", "/console/account/totp/remove"): "the visitor's own factors (sudo)",
    ("POST", "/console/account/recovery-codes"): "the visitor's own factors (sudo)",
    ("POST", "/console/account/passkeys"): "the visitor's own passkeys (sudo)",
    ("POST", "/console/account/passkeys/options"): "the visitor's own passkeys",
    (
        "POST",
        "/console/account/passkeys/{passkey_id}/remove",
    ): "the visitor's own passkeys (sudo; others' 404)",
}


# -- the tables in docs/security.md -------------------------------------------------

DOC: Final = Path(__file__).resolve().parents[2] / "docs" / "security.md"
START: Final = "<!-- authorization-matrix:start (generated by tests/security/authorization.py) -->"
END: Final = "<!-- authorization-matrix:end -->"


def render_tables() -> str:
    lines = [
        "REST API (`/api/v1`): the status each caller gets.",
        "",
        "| endpoint | scope | " + " | ".join(API_SUBJECT_LABELS[s] for s in API_SUBJECTS) + " |",
        "|---|---|" + "---|" * len(API_SUBJECTS),
    ]
    for endpoint in API_ENDPOINTS:
        cells = " | ".join(str(endpoint.expected(subject)) for subject in API_SUBJECTS)
        scope = f"`{endpoint.scope}`" if endpoint.scope else "—"
        lines.append(f"| `{endpoint.method} {endpoint.path}` | {scope} | {cells} |")
    notes = [e for e in API_ENDPOINTS if e.note]
    lines += ["", *(f"- `{e.method} {e.path}`: {e.note}." for e in notes)]
    lines += [
        "",
        "Console: the status each person gets (a target key created by someone else).",
        "",
        "| action | "
        + " | ".join(CONSOLE_SUBJECT_LABELS[s] for s in CONSOLE_SUBJECTS)
        + " | note |",
        "|---|" + "---|" * (len(CONSOLE_SUBJECTS) + 1),
    ]
    for action in CONSOLE_ACTIONS:
        cells = " | ".join(str(answer) for answer in action.answers)
        lines.append(f"| `{action.method} {action.path}` | {cells} | {action.note} |")
    lines += [
        "",
        "Not organization actions (not in the matrix): "
        + "; ".join(f"`{m} {p}` ({why})" for (m, p), why in CONSOLE_EXEMPT.items())
        + ".",
    ]
    return "\n".join(lines)


def documented_tables(text: str) -> str | None:
    found = re.search(re.escape(START) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    return found.group(1) if found else None


def write_doc() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = f"{START}\n{render_tables()}\n{END}"
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} has no {START} ... {END} block")
    text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_doc()
