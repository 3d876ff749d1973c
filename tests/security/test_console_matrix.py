"""The console half of the authorization matrix (tests/security/authorization.py).

Roles are decided in the service layer, which the API matrix runs on both
databases; this half (argon2 sign-ins for every person) runs on SQLite only.
"""

from __future__ import annotations

import ipaddress
import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyplane.config import Settings
from keyplane.service.records import Actor, Caller, Role
from keyplane.service.services import Services
from tests.console.conftest import PASSWORD, Browser
from tests.security.authorization import CONSOLE_ACTIONS, CONSOLE_SUBJECTS, ConsoleAction

_names = itertools.count()


def _operator(organization_id: str) -> Caller:
    return Caller(organization_id, ("*",), Actor.operator())


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "keyplane.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


#: Webhook endpoints of the matrix point here (nothing listens: deliveries are not sent).
HOOK_URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        outbound_allow_networks=(ipaddress.IPv4Network("127.0.0.1/32"),),
        webhook_workers=0,
    )


# -- the console -------------------------------------------------------------------


@dataclass
class ConsoleWorld:
    services: Services
    browsers: dict[str, Browser]
    organization_id: str
    project_id: str

    def targets(self) -> dict[str, str]:
        """Fresh objects of the organization: a key, a member, an invitation."""
        caller = _operator(self.organization_id)
        key = self.services.keys.create(caller, self.project_id, name=f"target {next(_names)}")
        email = f"target{next(_names)}@acme.test"
        joined = self.services.invitations.invite(caller, email, Role.MEMBER)
        session = self.services.invitations.accept_new_account(joined.token, PASSWORD)
        invitation = self.services.invitations.invite(caller, f"pending{next(_names)}@acme.test")
        webhook = self.services.webhooks.create_endpoint(caller, url=HOOK_URL)
        delivery = self.services.webhooks.send_test(caller, webhook.endpoint.id)
        return {
            "endpoint_id": webhook.endpoint.id,
            "delivery_id": delivery.id,
            "key_id": key.record.id,
            "user_id": session.record.user_id,
            "invitation_id": invitation.record.id,
        }


@pytest.fixture
def console_world(
    owner: Browser,
    make_browser: Callable[..., Browser],
    services: Services,
    open_signup: None,
) -> ConsoleWorld:
    browsers = {"owner": owner}
    for index, role in enumerate(("admin", "member")):
        link = owner.invite(f"{role}@acme.test", role)
        browser = make_browser(f"198.51.100.{60 + index}")
        assert browser.join(link).status_code == 303
        browsers[role] = browser
    stranger = make_browser("198.51.100.70")
    stranger.sign_up("owner@globex.test", "Globex")
    browsers["other-org"] = stranger
    browsers["anonymous"] = make_browser("198.51.100.71")
    organization = services.accounts.operator_caller("Acme").organization_id
    return ConsoleWorld(services, browsers, organization, owner.project_id())


_FORMS: dict[tuple[str, str], dict[str, object]] = {
    ("POST", "/console/keys"): {"name": "made in the matrix"},
    ("POST", "/console/keys/{key_id}/rename"): {"name": "renamed"},
    ("POST", "/console/keys/{key_id}/roll"): {"grace_seconds": "0"},
    ("POST", "/console/members/{user_id}/role"): {"role": "admin"},
    ("POST", "/console/webhooks"): {"url": HOOK_URL},
    ("POST", "/console/webhooks/{endpoint_id}"): {"url": HOOK_URL, "description": "changed"},
    ("POST", "/console/webhooks/{endpoint_id}/rotate"): {"overlap": "3600"},
}


@pytest.mark.parametrize("action", CONSOLE_ACTIONS, ids=lambda a: f"{a.method} {a.path}")
def test_console_answers_every_person_as_the_matrix_says(
    console_world: ConsoleWorld, action: ConsoleAction
) -> None:
    got: dict[str, int] = {}
    for subject in CONSOLE_SUBJECTS:
        browser = console_world.browsers[subject]
        path = action.path.format(**console_world.targets())
        if action.method == "GET":
            response = browser.get(path)
        else:
            form: dict[str, object] = dict(_FORMS.get((action.method, action.path), {}))
            if action.path == "/console/keys":
                form["project"] = console_world.project_id
            if action.path == "/console/projects":
                form["name"] = f"project {next(_names)}"
            if action.path == "/console/members/invite":
                form["email"] = f"invited{next(_names)}@example.test"
            if subject == "anonymous":
                form["csrf_token"] = "none"
            response = browser.post(path, form)
        got[subject] = response.status_code
    expected = {subject: action.expected(subject) for subject in CONSOLE_SUBJECTS}
    assert got == expected
