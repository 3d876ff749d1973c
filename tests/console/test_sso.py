"""Single sign-on (OIDC) against a real provider process (oidc-provider-mock)."""

from __future__ import annotations

import html
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx import Response
from sqlalchemy import func, select

from keyplane.core.errors import ReauthenticationRequired
from keyplane.service.records import Actor, Caller, Role
from keyplane.service.services import Services
from keyplane.storage.models import (
    AuditEvent,
    AuthChallenge,
    ConsoleSession,
    Membership,
    Organization,
    SsoConnection,
    SsoIdentity,
    User,
)
from tests.console.conftest import PASSWORD, Browser
from tests.oidc_provider import Provider, oidc_provider
from tests.processes import free_port
from tests.support import Clock

MakeBrowser = Callable[..., Browser]
DOMAIN = "acme.test"
SECRET = "s3cret-" + "x" * 24


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """One provider process for this module (each test uses its own subjects)."""
    with oidc_provider(tmp_path_factory.mktemp("oidc") / "provider.log") as running:
        yield running


def configure(
    owner: Browser,
    issuer: str,
    *,
    secret: str = SECRET,
    domain: str = DOMAIN,
    role: str = "member",
    enabled: bool = True,
) -> Response:
    data = {
        "issuer": issuer,
        "client_id": "keyplane-test",
        "client_secret": secret,
        "domain": domain,
        "default_role": role,
    }
    if enabled:
        data["enabled"] = "on"
    return owner.post("/console/settings/sso", data, token_from="/console/settings/sso")


@pytest.fixture
def sso_owner(owner: Browser, provider: Provider) -> Browser:
    response = configure(owner, provider.issuer)
    assert response.status_code == 303, response.text
    return owner


def start(browser: Browser, email: str, next_path: str = "") -> Response:
    return browser.post(
        "/console/sso/start", {"email": email, "next": next_path}, token_from="/console/sso"
    )


def sign_in_with_sso(
    browser: Browser, provider: Provider, sub: str, email: str, *, claims_email: str | None = None
) -> Response:
    """The whole round trip: start, the provider's page, the callback."""
    provider.set_user(sub, claims_email or email)
    started = start(browser, email)
    assert started.status_code == 200, started.text
    query = provider.authorize(authorization_url(started), sub)
    return browser.get("/console/sso/callback", params=query)


def authorization_url(response: Response) -> str:
    """The provider URL the start page moves on to (meta refresh, and its link)."""
    found = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', response.text)
    assert found, response.text
    url = html.unescape(found.group(1))
    assert f'href="{found.group(1)}"' in response.text
    return url


def events(services: Services, action: str) -> list[AuditEvent]:
    with services.database.read() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
        session.expunge_all()
        return list(rows)


def new_sub() -> str:
    return "sub-" + secrets.token_hex(6)


# -- settings -----------------------------------------------------------------


def test_owner_configures_sso_and_the_secret_is_sealed_and_never_shown(
    sso_owner: Browser,
    services: Services,
    provider: Provider,
) -> None:
    page = sso_owner.get("/console/settings/sso")
    assert page.status_code == 200
    assert provider.issuer in page.text
    assert "keyplane-test" in page.text
    assert ">set<" in page.text
    assert SECRET not in page.text
    assert "http://127.0.0.1:8000/console/sso/callback" in page.text  # console_url, not Host
    with services.database.read() as session:
        row = session.scalar(select(SsoConnection))
        assert row is not None
        assert SECRET not in row.client_secret
        assert services.sealer.open(row.client_secret) == SECRET
        assert row.domain == DOMAIN
        assert row.enabled
    (configured,) = events(services, "sso.configured")
    assert SECRET not in json.dumps(configured.details)
    assert configured.details["domain"] == DOMAIN


def test_changing_and_removing_sso_is_audited_and_a_blank_secret_keeps_the_old(
    sso_owner: Browser,
    services: Services,
    provider: Provider,
) -> None:
    assert configure(sso_owner, provider.issuer, secret="", role="admin").status_code == 303
    with services.database.read() as session:
        row = session.scalar(select(SsoConnection))
        assert row is not None
        assert services.sealer.open(row.client_secret) == SECRET
        assert row.default_role == "admin"
    (changed,) = events(services, "sso.changed")
    assert changed.details == {"default_role": {"from": "member", "to": "admin"}}
    assert configure(sso_owner, provider.issuer, secret="another-secret-value").status_code == 303
    assert events(services, "sso.changed")[-1].details["client_secret"] == "replaced"
    removed = sso_owner.post("/console/settings/sso/remove", {}, token_from="/console/settings/sso")
    assert removed.status_code == 303
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(SsoConnection)) == 0
    assert len(events(services, "sso.removed")) == 1


def test_an_issuer_that_does_not_answer_is_refused_inline(
    owner: Browser, services: Services
) -> None:
    response = configure(owner, f"http://127.0.0.1:{free_port()}")
    assert response.status_code == 422
    assert "does not answer" in response.text
    assert SECRET not in response.text
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(SsoConnection)) == 0
    assert events(services, "sso.configured") == []


@pytest.fixture
def lying_issuer() -> Iterator[str]:
    """A discovery document that names another issuer."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "issuer": "https://idp.example.com",
                    "authorization_endpoint": "https://idp.example.com/authorize",
                    "token_endpoint": "https://idp.example.com/token",
                    "jwks_uri": "https://idp.example.com/jwks",
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_issuer_whose_discovery_names_another_is_refused(
    owner: Browser, services: Services, lying_issuer: str
) -> None:
    response = configure(owner, lying_issuer)
    assert response.status_code == 422
    assert "names itself" in response.text
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(SsoConnection)) == 0


def test_bad_settings_input_is_a_4xx(owner: Browser, provider: Provider) -> None:
    assert configure(owner, "ftp://idp.example.com").status_code == 422
    assert configure(owner, provider.issuer, domain="not a domain").status_code == 422
    assert configure(owner, provider.issuer, role="owner").status_code == 422
    assert configure(owner, provider.issuer, role="nonsense").status_code == 422


def test_only_an_owner_sees_or_changes_sso(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
) -> None:
    link = sso_owner.invite("admin@acme.test", "admin")
    admin = make_browser()
    assert admin.join(link).status_code == 303
    assert admin.get("/console/settings/sso").status_code == 403
    token = admin.csrf()
    for path in ("/console/settings/sso", "/console/settings/sso/remove"):
        response = admin.post(path, {"csrf_token": token, "issuer": provider.issuer})
        assert response.status_code == 403
    assert "Single sign-on" not in admin.get("/console/keys").text


def test_a_domain_belongs_to_one_organization(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    open_signup: None,
) -> None:
    other = make_browser()
    other.sign_up("owner@globex.test", "Globex")
    response = configure(other, provider.issuer)
    assert response.status_code == 422
    assert "another organization" in response.text


# -- sign-in by domain ----------------------------------------------------------


def test_the_sign_in_page_offers_sso(browser: Browser) -> None:
    page = browser.get("/console/signin")
    assert 'href="/console/sso' in page.text
    assert "Sign in with SSO" in page.text


def test_an_unknown_domain_gets_the_same_neutral_answer(
    sso_owner: Browser, make_browser: MakeBrowser, services: Services
) -> None:
    visitor = make_browser()
    answers = []
    for email in ("ada@unknown.test", "bob@globex.test", "eve@other.example"):
        response = start(visitor, email)
        assert response.status_code == 200
        answers.append(re.sub(r'value="[^"]*"', "", response.text))
    assert "If your organization uses single sign-on" in answers[0]
    assert "Continue to your identity provider" not in answers[0]
    assert answers[0] == answers[1] == answers[2]
    # A disabled connection is an unknown domain too.
    with services.database.write() as session:
        row = session.scalar(select(SsoConnection))
        assert row is not None
        row.enabled = False
    disabled = start(visitor, "ada@acme.test")
    assert disabled.status_code == 200
    assert re.sub(r'value="[^"]*"', "", disabled.text) == answers[0]


def test_a_known_domain_goes_to_the_provider_with_state_nonce_and_pkce(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    response = start(visitor, "Ada@ACME.test", "/console/projects")
    assert response.status_code == 200
    location = authorization_url(response)
    assert location.startswith(provider.issuer + "/oauth2/authorize?")
    query = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "keyplane-test"
    assert query["redirect_uri"] == "http://127.0.0.1:8000/console/sso/callback"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 40
    assert len(query["nonce"]) >= 40
    assert "openid" in query["scope"].split()
    cookie = response.headers["set-cookie"]
    assert "keyplane_sso=" in cookie
    assert "HttpOnly" in cookie
    assert "Path=/console/sso" in cookie
    assert "samesite=lax" in cookie.lower()
    token = visitor.client.cookies.get("keyplane_sso", path="/console/sso")
    assert token
    with services.database.read() as session:
        challenge = session.scalar(select(AuthChallenge))
        assert challenge is not None
        assert token not in challenge.data
        assert query["state"] not in challenge.data  # sealed
        assert query["nonce"] not in challenge.data
        assert challenge.expires_at - challenge.created_at == timedelta(minutes=10)
        assert challenge.used_at is None


def test_first_sign_in_creates_the_user_and_a_membership_with_the_default_role(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    visitor.set_session("planted-session-token")
    sub = new_sub()
    done = sign_in_with_sso(visitor, provider, sub, "ada@acme.test")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console/keys"
    assert visitor.session_token != "planted-session-token"
    keys = visitor.get("/console/keys")
    assert keys.status_code == 200
    assert "ada@acme.test" in keys.text
    with services.database.read() as session:
        user = session.scalar(select(User).where(User.email == "ada@acme.test"))
        assert user is not None
        assert user.password_hash is None
        assert user.email_verified_at is not None
        organization_id = session.scalar(select(SsoConnection.organization_id))
        membership = session.scalar(select(Membership).where(Membership.user_id == user.id))
        assert membership is not None
        assert membership.organization_id == organization_id
        assert membership.role == "member"
        identity = session.scalar(select(SsoIdentity).where(SsoIdentity.user_id == user.id))
        assert identity is not None
        assert (identity.issuer, identity.subject) == (provider.issuer, sub)
        methods = session.scalars(
            select(ConsoleSession.method).where(ConsoleSession.user_id == user.id)
        ).all()
        assert methods == ["sso"]
        user_id = user.id
    signed_in = [
        event for event in events(services, "user.signed_in") if event.target_id == user_id
    ]
    assert [event.details for event in signed_in] == [{"method": "sso"}]
    assert any(event.target_id == user_id for event in events(services, "member.added"))


def test_second_sign_in_reuses_the_identity(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    sub = new_sub()
    assert sign_in_with_sso(make_browser(), provider, sub, "bob@acme.test").status_code == 303
    # The provider now says another address for the same subject: the pair decides.
    again = make_browser("198.51.100.21")
    done = sign_in_with_sso(again, provider, sub, "bob@acme.test", claims_email="robert@acme.test")
    assert done.status_code == 303
    assert "bob@acme.test" in again.get("/console/keys").text
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(SsoIdentity)) == 1
        assert (
            session.scalar(
                select(func.count()).select_from(User).where(User.email.like("%@acme.test"))
            )
            == 2
        )
        assert session.scalar(select(User.pk).where(User.email == "robert@acme.test")) is None


def test_the_next_page_is_kept_through_the_provider(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
) -> None:
    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "nia@acme.test")
    started = start(visitor, "nia@acme.test", "/console/projects")
    query = provider.authorize(authorization_url(started), sub)
    done = visitor.get("/console/sso/callback", params=query)
    assert done.headers["location"] == "/console/projects"


def test_an_existing_password_user_at_the_domain_is_linked(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    sub = new_sub()
    done = sign_in_with_sso(visitor, provider, sub, "owner@acme.test")
    assert done.status_code == 303
    with services.database.read() as session:
        user = session.scalar(select(User).where(User.email == "owner@acme.test"))
        assert user is not None
        assert user.password_hash is not None  # untouched
        assert user.email_verified_at is not None
        assert session.scalar(select(SsoIdentity.user_id).where(SsoIdentity.subject == sub)) == (
            user.id
        )
        roles = session.scalars(select(Membership.role).where(Membership.user_id == user.id)).all()
        assert roles == ["owner"]  # the membership it had, not a second one


def test_another_subject_for_a_linked_address_is_refused(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
) -> None:
    assert sign_in_with_sso(make_browser(), provider, new_sub(), "cy@acme.test").status_code == 303
    refused = sign_in_with_sso(make_browser("198.51.100.22"), provider, new_sub(), "cy@acme.test")
    assert refused.status_code == 403
    assert "linked to another account" in refused.text


# -- refusals -----------------------------------------------------------------------


def failures(services: Services) -> list[str]:
    return [event.details["reason"] for event in events(services, "user.sso_failed")]


def test_a_replayed_callback_is_refused(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "dee@acme.test")
    started = start(visitor, "dee@acme.test")
    token = visitor.client.cookies.get("keyplane_sso", path="/console/sso")
    query = provider.authorize(authorization_url(started), sub)
    assert visitor.get("/console/sso/callback", params=query).status_code == 303
    # The same answer again, with the challenge cookie put back.
    visitor.client.cookies.set("keyplane_sso", token, domain="console.test", path="/console/sso")
    visitor.set_session(None)
    replayed = visitor.get("/console/sso/callback", params=query)
    assert replayed.status_code == 400
    assert "already used" in replayed.text
    assert "keyplane_session=" not in replayed.headers.get("set-cookie", "")
    assert failures(services) == ["replayed"]


def test_a_wrong_state_is_refused_and_burns_the_challenge(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "eve@acme.test")
    started = start(visitor, "eve@acme.test")
    query = provider.authorize(authorization_url(started), sub)
    forged = visitor.get("/console/sso/callback", params={**query, "state": "forged"})
    assert forged.status_code == 400
    assert "does not belong to the sign-in" in forged.text
    assert failures(services) == ["bad_state"]
    with services.database.read() as session:
        assert session.scalar(select(User.pk).where(User.email == "eve@acme.test")) is None


def test_a_callback_without_the_browser_cookie_is_refused(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
) -> None:
    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "fay@acme.test")
    started = start(visitor, "fay@acme.test")
    query = provider.authorize(authorization_url(started), sub)
    thief = make_browser("198.51.100.30")  # another browser with the same callback URL
    stolen = thief.get("/console/sso/callback", params=query)
    assert stolen.status_code == 400
    assert "not started in this browser" in stolen.text
    assert thief.client.cookies.get("keyplane_session", path="/console") is None


def test_an_expired_challenge_is_refused(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
    clock: Clock,
) -> None:
    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "gus@acme.test")
    started = start(visitor, "gus@acme.test")
    query = provider.authorize(authorization_url(started), sub)
    clock.advance(timedelta(minutes=10, seconds=1))
    expired = visitor.get("/console/sso/callback", params=query)
    assert expired.status_code == 400
    assert "longer than 10 minutes" in expired.text
    assert failures(services) == ["expired"]


def test_a_wrong_nonce_is_refused(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "hal@acme.test")
    started = start(visitor, "hal@acme.test")
    query = provider.authorize(authorization_url(started), sub)
    with services.database.write() as session:  # the challenge expects another nonce
        challenge = session.scalar(select(AuthChallenge))
        assert challenge is not None
        data = json.loads(services.sealer.open(challenge.data))
        data["nonce"] = "another-nonce"
        challenge.data = services.sealer.seal(json.dumps(data))
    refused = visitor.get("/console/sso/callback", params=query)
    assert refused.status_code == 400
    assert "wrong nonce" in refused.text
    assert failures(services) == ["nonce_mismatch"]
    with services.database.read() as session:
        assert session.scalar(select(User.pk).where(User.email == "hal@acme.test")) is None


def test_a_provider_error_is_refused(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    started = start(visitor, "ivy@acme.test")
    query = provider.deny(authorization_url(started))
    assert query["error"] == "access_denied", query
    refused = visitor.get("/console/sso/callback", params=query)
    assert refused.status_code == 400
    assert "refused the sign-in (access_denied)" in refused.text
    assert failures(services) == ["provider_error"]


def test_an_email_outside_the_domain_is_refused(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    refused = sign_in_with_sso(
        visitor, provider, new_sub(), "jo@acme.test", claims_email="jo@elsewhere.test"
    )
    assert refused.status_code == 403
    assert "addresses at acme.test" in refused.text
    assert failures(services) == ["outside_domain"]
    with services.database.read() as session:
        assert session.scalar(select(User.pk).where(User.email == "jo@elsewhere.test")) is None
        assert session.scalar(select(func.count()).select_from(SsoIdentity)) == 0


def test_an_unverified_email_is_refused(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "kim@acme.test", verified=None)
    started = start(visitor, "kim@acme.test")
    query = provider.authorize(authorization_url(started), sub)
    refused = visitor.get("/console/sso/callback", params=query)
    assert refused.status_code == 403
    assert "email_verified" in refused.text
    assert failures(services) == ["email_unverified"]
    with services.database.read() as session:
        assert session.scalar(select(User.pk).where(User.email == "kim@acme.test")) is None


def test_an_unverified_email_never_links_an_existing_account(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    sub = new_sub()
    provider.set_user(sub, "owner@acme.test", verified=False)
    visitor = make_browser()
    started = start(visitor, "owner@acme.test")
    query = provider.authorize(authorization_url(started), sub)
    assert visitor.get("/console/sso/callback", params=query).status_code == 403
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(SsoIdentity)) == 0


def test_garbage_on_the_callback_is_a_4xx(make_browser: MakeBrowser) -> None:
    visitor = make_browser()
    for params in ({}, {"state": "x" * 400, "code": "y"}, {"error": "<script>"}):
        response = visitor.get("/console/sso/callback", params=params)
        assert 400 <= response.status_code < 500
    visitor.client.cookies.set(
        "keyplane_sso", "\x00bad", domain="console.test", path="/console/sso"
    )
    assert (
        visitor.get("/console/sso/callback", params={"state": "a", "code": "b"}).status_code == 400
    )
    assert start(visitor, "not an address").status_code == 422


# -- the policy -----------------------------------------------------------------------


def test_the_policy_blocks_password_sign_in_for_members_but_not_owners(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    member = make_browser()
    assert sign_in_with_sso(member, provider, new_sub(), "lee@acme.test").status_code == 303
    services.accounts.set_password("lee@acme.test", PASSWORD)
    assert make_browser("198.51.100.40").sign_in("lee@acme.test").status_code == 303

    turned_on = sso_owner.post(
        "/console/settings/sso/policy", {"require_sso": "on"}, token_from="/console/settings/sso"
    )
    assert turned_on.status_code == 303
    with services.database.read() as session:
        assert session.scalar(select(Organization.require_sso)) is True
    (changed,) = events(services, "organization.sso_policy_changed")
    assert changed.details == {"require_sso": True}

    refused = make_browser("198.51.100.41").sign_in("lee@acme.test")
    assert refused.status_code == 403
    assert "requires single sign-on" in refused.text
    wrong = make_browser("198.51.100.42").sign_in("lee@acme.test", "not the password!")
    assert wrong.status_code == 401  # a wrong password says nothing about the policy
    assert "single sign-on" not in wrong.text.split("Sign in with SSO")[0]
    assert (
        make_browser("198.51.100.43").sign_in("owner@acme.test").status_code == 303
    )  # break-glass
    # SSO still works for the member.
    assert (
        sign_in_with_sso(
            make_browser("198.51.100.44"), provider, new_sub(), "lee2@acme.test"
        ).status_code
        == 303
    )

    # Removing the connection lifts the policy (nobody is locked out).
    sso_owner.post("/console/settings/sso/remove", {}, token_from="/console/settings/sso")
    assert make_browser("198.51.100.45").sign_in("lee@acme.test").status_code == 303


def test_the_policy_needs_an_enabled_connection(owner: Browser, services: Services) -> None:
    token = owner.csrf()
    refused = owner.post("/console/settings/sso/policy", {"csrf_token": token, "require_sso": "on"})
    assert refused.status_code == 422
    with services.database.read() as session:
        assert session.scalar(select(Organization.require_sso)) is False


def test_the_policy_rule_is_one_function(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
) -> None:
    from keyplane.service.accounts.sso_policy import password_sign_in_allowed

    assert sign_in_with_sso(make_browser(), provider, new_sub(), "max@acme.test").status_code == 303
    with services.database.write() as session:
        organization = session.scalar(select(Organization))
        assert organization is not None
        organization.require_sso = True
    with services.database.read() as session:
        organization_id = session.scalar(select(Organization.id))
        assert organization_id is not None
        ids = {email: user_id for email, user_id in session.execute(select(User.email, User.id))}
        assert not password_sign_in_allowed(session, ids["max@acme.test"], organization_id)
        assert password_sign_in_allowed(session, ids["owner@acme.test"], organization_id)
    with services.database.write() as session:
        row = session.scalar(select(SsoConnection))
        assert row is not None
        row.enabled = False
    with services.database.read() as session:
        assert password_sign_in_allowed(session, ids["max@acme.test"], organization_id)


# -- the secret ------------------------------------------------------------------------


def test_the_client_secret_never_appears_in_a_page_or_a_log(
    owner: Browser,
    make_browser: MakeBrowser,
    provider: Provider,
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "top-secret-" + secrets.token_hex(16)
    pages = [configure(owner, provider.issuer, secret=secret)]
    pages.append(owner.get("/console/settings/sso"))
    pages.append(owner.get("/console/audit"))
    pages.append(configure(owner, f"http://127.0.0.1:{free_port()}", secret=secret))
    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "ned@acme.test")
    started = start(visitor, "ned@acme.test")
    pages.append(started)
    query = provider.authorize(authorization_url(started), sub)
    pages.append(visitor.get("/console/sso/callback", params=query))
    pages.append(visitor.get("/console/keys"))
    pages.append(visitor.get("/console/sso/callback", params=query))  # a refused replay
    for page in pages:
        assert page.status_code < 500
        assert secret not in page.text
        assert secret not in str(page.headers)
    assert secret not in caplog.text
    assert secret not in repr(services.sso)
    with services.database.read() as session:
        for event in session.scalars(select(AuditEvent)).all():
            assert secret not in json.dumps(event.details)
        row = session.scalar(select(SsoConnection))
        assert row is not None
        assert secret not in row.client_secret


def test_the_policy_refuses_a_new_password_account_by_invitation(
    sso_owner: Browser, make_browser: MakeBrowser, services: Services
) -> None:
    link = sso_owner.invite("pat@acme.test", "member")
    services.sso.set_policy(
        Caller(
            sso_owner_organization(services),
            ("*",),
            Actor(f"user:{owner_id(services)}"),
            Role.OWNER,
            authenticated_at=services.clock(),  # just signed in: sudo mode holds
        ),
        True,
    )
    refused = make_browser().join(link)
    assert refused.status_code == 403
    assert "requires single sign-on" in refused.text
    with services.database.read() as session:
        assert session.scalar(select(User.pk).where(User.email == "pat@acme.test")) is None


def sso_owner_organization(services: Services) -> str:
    with services.database.read() as session:
        found = session.scalar(select(SsoConnection.organization_id))
        assert found is not None
        return found


def owner_id(services: Services) -> str:
    with services.database.read() as session:
        found = session.scalar(select(User.id).where(User.email == "owner@acme.test"))
        assert found is not None
        return found


def test_old_challenges_are_pruned(
    sso_owner: Browser, make_browser: MakeBrowser, services: Services, clock: Clock
) -> None:
    visitor = make_browser()
    assert start(visitor, "old@acme.test").status_code == 200
    clock.advance(timedelta(minutes=21))
    assert start(visitor, "new@acme.test").status_code == 200
    with services.database.read() as session:
        rows = session.scalars(select(AuthChallenge)).all()
        assert len(rows) == 1
        assert rows[0].created_at == clock.now


def test_concurrent_callbacks_of_one_sign_in_start_one_session(
    sso_owner: Browser, make_browser: MakeBrowser, provider: Provider, services: Services
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from keyplane.service.accounts.sso import SsoFailed

    visitor = make_browser()
    sub = new_sub()
    provider.set_user(sub, "ray@acme.test")
    started = start(visitor, "ray@acme.test")
    token = visitor.client.cookies.get("keyplane_sso", path="/console/sso")
    query = provider.authorize(authorization_url(started), sub)

    def callback(_: int) -> str:
        try:
            services.sso.complete(token, state=query["state"], code=query["code"])
        except SsoFailed as failure:
            return failure.reason
        return "signed in"

    with ThreadPoolExecutor(6) as pool:
        outcomes = sorted(pool.map(callback, range(6)))
    assert outcomes == ["replayed"] * 5 + ["signed in"]
    with services.database.read() as session:
        user_id = session.scalar(select(User.id).where(User.email == "ray@acme.test"))
        sessions = session.scalar(
            select(func.count())
            .select_from(ConsoleSession)
            .where(ConsoleSession.user_id == user_id)
        )
        assert sessions == 1


def test_sso_settings_need_a_recent_sign_in(
    sso_owner: Browser, services: Services, clock: Clock
) -> None:
    """Sudo mode guards every SSO settings change in the service (issue 13)."""
    caller = Caller(
        sso_owner_organization(services),
        ("*",),
        Actor(f"user:{owner_id(services)}"),
        Role.OWNER,
        authenticated_at=services.clock() - services.settings.sudo_timeout - timedelta(seconds=1),
    )
    with pytest.raises(ReauthenticationRequired):
        services.sso.set_policy(caller, True)
    with pytest.raises(ReauthenticationRequired):
        services.sso.remove(caller)
    clock.advance(services.settings.sudo_timeout + timedelta(seconds=1))
    response = sso_owner.post("/console/settings/sso/policy", {"require_sso": "on"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sudo?next=")
    with services.database.read() as session:
        assert session.scalar(select(Organization.require_sso)) is False


def test_an_organization_cannot_claim_an_account_of_another_organization_by_sso(
    make_browser: MakeBrowser, provider: Provider, services: Services, open_signup: None
) -> None:
    """The owner of an organization picks its provider and its domain: a provider
    that vouches for the address of an account elsewhere must not sign in as it."""
    victim = make_browser("198.51.100.80")
    victim.sign_up("ceo@acme.test", "Victim Inc")
    attacker = make_browser("198.51.100.81")
    attacker.sign_up("mallory@evil.test", "Evil")
    assert configure(attacker, provider.issuer).status_code == 303  # domain acme.test
    visitor = make_browser("198.51.100.82")
    refused = sign_in_with_sso(visitor, provider, new_sub(), "ceo@acme.test")
    assert refused.status_code == 403
    assert "already has a Keyplane account" in refused.text
    assert "keyplane_session" not in refused.headers.get("set-cookie", "")
    with services.database.read() as session:
        user_id = session.scalar(select(User.id).where(User.email == "ceo@acme.test"))
        assert session.scalar(select(SsoIdentity.pk).where(SsoIdentity.user_id == user_id)) is None
        memberships = session.scalars(
            select(Membership.organization_id).where(Membership.user_id == user_id)
        ).all()
        assert len(memberships) == 1  # Victim Inc only
    assert "existing_account" in failures(services)


def test_a_password_session_cannot_join_an_sso_only_organization_by_invitation(
    sso_owner: Browser,
    make_browser: MakeBrowser,
    services: Services,
    open_signup: None,
) -> None:
    outsider = make_browser("198.51.100.83")
    outsider.sign_up("pat@elsewhere.test", "Elsewhere")
    link = sso_owner.invite("pat@elsewhere.test", "member")
    services.sso.set_policy(
        Caller(
            sso_owner_organization(services),
            ("*",),
            Actor(f"user:{owner_id(services)}"),
            Role.OWNER,
            authenticated_at=services.clock(),
        ),
        True,
    )
    refused = outsider.join_signed_in(link)
    assert refused.status_code == 403
    assert "requires single sign-on" in refused.text
    with services.database.read() as session:
        user_id = session.scalar(select(User.id).where(User.email == "pat@elsewhere.test"))
        assert (
            session.scalar(
                select(Membership.pk).where(
                    Membership.user_id == user_id,
                    Membership.organization_id == sso_owner_organization(services),
                )
            )
            is None
        )


def test_a_sign_in_without_sso_lands_only_where_the_policy_allows(
    sso_owner: Browser, make_browser: MakeBrowser, provider: Provider, services: Services
) -> None:
    """The rule passkey sign-in shares with password sign-in (``landing_without_sso``)."""
    from keyplane.service.accounts.sessions import landing_without_sso
    from keyplane.service.accounts.sso_policy import SsoRequired

    assert sign_in_with_sso(make_browser(), provider, new_sub(), "dee@acme.test").status_code == 303
    services.sso.set_policy(
        Caller(
            sso_owner_organization(services),
            ("*",),
            Actor(f"user:{owner_id(services)}"),
            Role.OWNER,
            authenticated_at=services.clock(),
        ),
        True,
    )
    with services.database.read() as session:
        dee = session.scalar(select(User.id).where(User.email == "dee@acme.test"))
        assert dee is not None
        with pytest.raises(SsoRequired):
            landing_without_sso(session, dee)
        # The owner keeps a way in (break-glass).
        assert landing_without_sso(session, owner_id(services)) == sso_owner_organization(services)
