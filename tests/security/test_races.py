"""Races: concurrent requests that each pass a check the other one invalidates.

Every test runs real requests at the same moment (threads lined up on a
barrier) against a real server (Uvicorn on 127.0.0.1) on SQLite and on
PostgreSQL, and checks the invariant the product promises: an organization
always has an owner, a key has at most one successor, one change leaves one
audit event, and the loser of a race gets a 409 problem (or an idempotent
success), never a 500. On PostgreSQL (READ COMMITTED, real parallelism) the
original code broke each of these in most trials; SQLite serializes writers
(``BEGIN IMMEDIATE``), and the same tests check it stays correct there.
Bounded: a few trials of two to four requests each, with timeouts.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

import httpx
import pytest
from argon2 import PasswordHasher, profiles
from sqlalchemy import delete, func, select, update

from keyplane.config import Settings
from keyplane.core.errors import AuthenticationFailed, StateConflict
from keyplane.ionq.jobs.records import JobOwner, JobStatus
from keyplane.service.accounts.members import SignupPolicy
from keyplane.service.records import Actor, Caller, Role
from keyplane.service.services import Services
from keyplane.storage.models import (
    ApiKey,
    AuditEvent,
    ConsoleSession,
    Job,
    KeyLeak,
    Membership,
    Organization,
)
from tests.live import LiveServer, live_server
from tests.security.github import GitHubSigner, report
from tests.support import Clock, Tenant

PASSWORD = "correct horse battery"
TRIALS = 6
TIMEOUT = 30.0
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

T = TypeVar("T")


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Run ``calls`` on their own threads, released together by a barrier."""
    barrier = threading.Barrier(len(calls), timeout=TIMEOUT)

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=TIMEOUT) for future in futures]


@pytest.fixture
def live(services: Services) -> Iterator[LiveServer]:
    with live_server(services) as running:
        yield running


def management_caller(tenant: Tenant) -> Caller:
    return Caller(tenant.organization_id, ("*",), Actor.operator())


def count(services: Services, statement: object) -> int:
    with services.database.read() as session:
        return int(session.scalar(statement) or 0)  # type: ignore[call-overload]


# -- keys: roll, revoke -------------------------------------------------------


def test_concurrent_rolls_of_one_key_make_one_successor(live: LiveServer) -> None:
    tenant = live.tenant()
    with httpx.Client(base_url=live.url, headers=tenant.headers, timeout=TIMEOUT) as client:
        for _ in range(TRIALS):
            key_id, _value = live.key(tenant, "keys:read")
            answers = at_once(
                partial(client.post, f"/api/v1/keys/{key_id}/roll"),
                partial(client.post, f"/api/v1/keys/{key_id}/roll"),
            )
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [201, 409], statuses
            loser = next(answer for answer in answers if answer.status_code == 409)
            assert loser.headers["content-type"] == "application/problem+json"
            assert loser.json()["code"] == "CONFLICT"
            successors = count(
                live.services,
                select(func.count()).select_from(ApiKey).where(ApiKey.rolled_from_id == key_id),
            )
            assert successors == 1


def test_rolls_through_two_servers_on_one_database_make_one_successor(
    live: LiveServer, settings: Settings, clock: Clock
) -> None:
    """Two instances (own engines, own pools): on SQLite two writers of one file, as a
    server and the admin CLI are; on PostgreSQL two instances behind a load balancer."""
    tenant = live.tenant()
    other = Services.open(settings, clock=clock)
    try:
        with (
            live_server(other) as second,
            httpx.Client(base_url=live.url, headers=tenant.headers, timeout=TIMEOUT) as one,
            httpx.Client(base_url=second.url, headers=tenant.headers, timeout=TIMEOUT) as two,
        ):
            # FastAPI builds a route's parameters on its first request, inside
            # ``warnings.catch_warnings()``, which is not thread-safe: two servers in one
            # process (only here; a served worker has one event-loop thread) building the
            # same route at once can leave pytest's "warnings are errors" filter in force
            # for one of them, a 500. So each server serves one roll before the race.
            for client in (one, two):
                warm_id, _value = live.key(tenant, "keys:read")
                assert client.post(f"/api/v1/keys/{warm_id}/roll").status_code == 201
            for _ in range(TRIALS):
                key_id, _value = live.key(tenant, "keys:read")
                answers = at_once(
                    partial(one.post, f"/api/v1/keys/{key_id}/roll"),
                    partial(two.post, f"/api/v1/keys/{key_id}/roll"),
                )
                statuses = sorted(answer.status_code for answer in answers)
                problems = [answer.text for answer in answers if answer.status_code != 201]
                assert statuses == [201, 409], problems
    finally:
        other.close()


def test_concurrent_revokes_succeed_and_record_one_event(live: LiveServer) -> None:
    tenant = live.tenant()
    with httpx.Client(base_url=live.url, headers=tenant.headers, timeout=TIMEOUT) as client:
        for _ in range(TRIALS):
            key_id, _value = live.key(tenant, "keys:read")
            answers = at_once(*[partial(client.delete, f"/api/v1/keys/{key_id}")] * 3)
            assert [answer.status_code for answer in answers] == [200] * 3
            events = count(
                live.services,
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.target_id == key_id, AuditEvent.action == "key.revoked"),
            )
            assert events == 1


def test_a_key_rolled_and_revoked_at_once_never_leaves_a_live_successor_of_a_revoked_key(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with httpx.Client(base_url=live.url, headers=tenant.headers, timeout=TIMEOUT) as client:
        for _ in range(TRIALS):
            key_id, _value = live.key(tenant, "keys:read")
            roll, revoke = at_once(
                partial(client.post, f"/api/v1/keys/{key_id}/roll"),
                partial(client.delete, f"/api/v1/keys/{key_id}"),
            )
            assert revoke.status_code == 200
            assert roll.status_code in (201, 409), roll.text
            if roll.status_code == 201:
                # The roll came first, so the revoke saw the key as the roll left it
                # (ending after the grace period), not as it was before the roll.
                assert revoke.json()["expires_at"] is not None
            else:  # the revoke came first: a revoked key has no successor
                assert roll.json()["code"] == "CONFLICT"


# -- members: an organization always has an owner -----------------------------


class ConsoleUser:
    """One person's browser over real HTTP: cookies, CSRF tokens from the pages."""

    def __init__(self, url: str, email: str) -> None:
        self.client = httpx.Client(base_url=url, follow_redirects=False, timeout=TIMEOUT)
        response = self.post("/console/signin", {"email": email, "password": PASSWORD})
        assert response.status_code == 303, response.text

    def csrf(self, path: str) -> str:
        found = _CSRF.search(self.client.get(path, follow_redirects=True).text)
        assert found
        return found.group(1)

    def post(
        self, path: str, data: dict[str, str], *, token_from: str | None = None
    ) -> httpx.Response:
        token = self.csrf(
            token_from or ("/console/signin" if "signin" in path else "/console/members")
        )
        return self.client.post(path, data={**data, "csrf_token": token})

    def prepared(self, path: str, data: dict[str, str]) -> Callable[[], httpx.Response]:
        """The POST with its CSRF token fetched now, sent when called."""
        token = self.csrf("/console/members")
        return lambda: self.client.post(path, data={**data, "csrf_token": token})

    def close(self) -> None:
        self.client.close()


def two_owners(live: LiveServer) -> tuple[str, str, str, str]:
    """A new organization with two owners who have passwords: (org id, user ids, emails...)."""
    services = live.services
    suffix = services.keys._format.generate().hint[-4:].lower()  # any fresh suffix
    first, second = f"ann-{suffix}@example.test", f"bob-{suffix}@example.test"
    result = services.bootstrap(
        organization_name=f"Two owners {suffix}",
        project_name="Default",
        owner_email=first,
        owner_password=PASSWORD,
    )
    organization_id = result.accounts.organization.id
    owner = Caller(organization_id, ("*",), Actor(f"user:{result.accounts.owner.id}"), Role.OWNER)
    invitation = services.invitations.invite(owner, second, Role.OWNER)
    joined = services.invitations.accept_new_account(invitation.token, PASSWORD)
    return organization_id, result.accounts.owner.id, joined.record.user_id, first + " " + second


def owners_of(services: Services, organization_id: str) -> int:
    return count(
        services,
        select(func.count())
        .select_from(Membership)
        .where(Membership.organization_id == organization_id, Membership.role == "owner"),
    )


@pytest.mark.parametrize("action", ["demote", "remove"])
def test_two_owners_acting_on_each_other_at_once_keep_an_owner(
    live: LiveServer, action: str
) -> None:
    for _ in range(TRIALS // 2):
        organization_id, ann_id, bob_id, emails = two_owners(live)
        ann_email, bob_email = emails.split()
        ann, bob = ConsoleUser(live.url, ann_email), ConsoleUser(live.url, bob_email)
        try:
            if action == "demote":
                calls = [
                    ann.prepared(f"/console/members/{bob_id}/role", {"role": "admin"}),
                    bob.prepared(f"/console/members/{ann_id}/role", {"role": "admin"}),
                ]
            else:
                calls = [
                    ann.prepared(f"/console/members/{bob_id}/remove", {}),
                    bob.prepared(f"/console/members/{ann_id}/remove", {}),
                ]
            answers = at_once(*calls)
        finally:
            ann.close()
            bob.close()
        statuses = sorted(answer.status_code for answer in answers)
        # The loser either finds itself no longer an owner (403), or the last owner (409);
        # a removed member's session ends, so its request may find no session (303 to sign-in).
        assert 303 in statuses, statuses
        assert set(statuses) <= {303, 403, 409}, statuses
        assert owners_of(live.services, organization_id) >= 1


# -- sign-up: with KEYPLANE_SIGNUP=first only the first person gets an organization


def test_concurrent_first_sign_ups_create_one_organization(live: LiveServer) -> None:
    live.services.members.policy = SignupPolicy.FIRST
    for trial in range(TRIALS):
        with live.services.database.write() as session:  # a fresh server again
            session.execute(delete(Organization))
        clients = [httpx.Client(base_url=live.url, timeout=TIMEOUT) for _ in range(3)]
        try:
            calls = []
            for number, client in enumerate(clients):
                token = _CSRF.search(client.get("/console/signup").text)
                assert token
                data = {
                    "email": f"first-{trial}-{number}@example.test",
                    "password": PASSWORD,
                    "organization": f"First {trial} {number}",
                    "csrf_token": token.group(1),
                }
                calls.append(
                    lambda client=client, data=data: client.post("/console/signup", data=data)
                )
            answers = at_once(*calls)
        finally:
            for client in clients:
                client.close()
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [303, 403, 403], statuses
        assert count(live.services, select(func.count()).select_from(Organization)) == 1


# -- leaks: one report, however often it arrives ------------------------------


@pytest.fixture
def leak_server(
    settings: Settings, clock: Clock, tmp_path: Path
) -> Iterator[tuple[LiveServer, GitHubSigner]]:
    signer = GitHubSigner.generate()
    keys_file = tmp_path / "github-keys.json"
    keys_file.write_text(signer.document(), encoding="utf-8")
    services = Services.open(dataclasses.replace(settings, github_keys_file=keys_file), clock=clock)
    try:
        with live_server(services) as running:
            yield running, signer
    finally:
        services.close()


def post_report(client: httpx.Client, signer: GitHubSigner, body: bytes) -> httpx.Response:
    return client.post("/api/v1/leaks/github", content=body, headers=signer.headers(body))


def test_the_same_leak_reported_twice_at_once_is_recorded_once(
    leak_server: tuple[LiveServer, GitHubSigner],
) -> None:
    live, signer = leak_server
    tenant = live.tenant()
    with httpx.Client(base_url=live.url, timeout=TIMEOUT) as client:
        for _ in range(TRIALS):
            first_id, first = live.key(tenant, "keys:read")
            second_id, second = live.key(tenant, "keys:read")
            answers = at_once(
                partial(post_report, client, signer, report(first, second)),
                partial(post_report, client, signer, report(second, first)),
            )
            assert [answer.status_code for answer in answers] == [200, 200], [
                answer.text for answer in answers
            ]
            for key_id in (first_id, second_id):
                leaks = count(
                    live.services,
                    select(func.count()).select_from(KeyLeak).where(KeyLeak.key_id == key_id),
                )
                revocations = count(
                    live.services,
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.target_id == key_id, AuditEvent.action == "key.revoked"),
                )
                assert (leaks, revocations) == (1, 1)


# -- passwords: the one checked is the one in force ---------------------------


class PausingHasher(PasswordHasher):
    """argon2id (the cheapest parameters) that can hold one thread just after a check,
    the moment a real sign-in spends between checking a password and writing."""

    def __init__(self) -> None:
        parameters = profiles.CHEAPEST
        super().__init__(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost,
            parallelism=parameters.parallelism,
            hash_len=parameters.hash_len,
            salt_len=parameters.salt_len,
        )
        self.hold_thread: int | None = None
        self.held = threading.Event()
        self.release = threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        verified = super().verify(hash, password)
        if threading.get_ident() == self.hold_thread:
            self.held.set()
            self.release.wait(TIMEOUT)
        return verified


def test_a_sign_in_checked_before_a_password_change_does_not_start_a_session_after_it(
    services: Services,
) -> None:
    hasher = PausingHasher()
    services.accounts._hasher = hasher  # the same argon2, cheap and holdable
    email = "ann@example.test"
    services.bootstrap(
        organization_name="Acme",
        project_name="Default",
        owner_email=email,
        owner_password=PASSWORD,
    )
    current = services.sessions.sign_in(email, PASSWORD).record
    outcome: list[object] = []

    def sign_in_with_the_old_password() -> None:
        hasher.hold_thread = threading.get_ident()
        try:
            outcome.append(services.sessions.sign_in(email, PASSWORD))
        except AuthenticationFailed as error:
            outcome.append(error)

    thread = threading.Thread(target=sign_in_with_the_old_password)
    thread.start()
    try:
        assert hasher.held.wait(TIMEOUT)  # the old password was checked and found right
        services.sessions.change_password(
            current, PASSWORD, "a brand new passphrase", actor=Actor("user:test")
        )
    finally:
        hasher.release.set()
        thread.join(TIMEOUT)
    assert len(outcome) == 1
    assert isinstance(outcome[0], AuthenticationFailed), "a session under the old password"
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 1


def test_a_sign_up_checked_before_a_password_change_adds_no_organization_after_it(
    services: Services,
) -> None:
    """Sign-up with an existing address is a sign-in that then adds an organization: the
    password it checked must still be the one in force when it writes (it was not)."""
    services.members.policy = SignupPolicy.OPEN
    hasher = PausingHasher()
    services.accounts._hasher = hasher
    email = "ann@example.test"
    services.bootstrap(
        organization_name="Acme", project_name="Default", owner_email=email, owner_password=PASSWORD
    )
    current = services.sessions.sign_in(email, PASSWORD).record
    outcome: list[object] = []

    def sign_up_with_the_old_password() -> None:
        hasher.hold_thread = threading.get_ident()
        try:
            outcome.append(
                services.members.sign_up(email=email, password=PASSWORD, organization_name="New")
            )
        except StateConflict as error:
            outcome.append(error)

    thread = threading.Thread(target=sign_up_with_the_old_password)
    thread.start()
    try:
        assert hasher.held.wait(TIMEOUT)
        services.sessions.change_password(
            current, PASSWORD, "a brand new passphrase", actor=Actor("user:test")
        )
    finally:
        hasher.release.set()
        thread.join(TIMEOUT)
    assert len(outcome) == 1
    assert isinstance(outcome[0], StateConflict), "an organization added under the old password"
    with services.database.read() as session:
        assert session.scalar(select(func.count()).select_from(Organization)) == 1


# -- sign-in throttle: a burst of guesses is counted as it arrives ------------


def test_a_burst_of_concurrent_wrong_passwords_gets_no_more_tries_than_the_limit(
    live: LiveServer,
) -> None:
    email = "target@example.test"
    live.services.bootstrap(
        organization_name="Target",
        project_name="Default",
        owner_email=email,
        owner_password=PASSWORD,
    )
    limit = int(live.services.settings.login_account_limit.split()[0])  # "5 per 5 minutes"
    clients = [httpx.Client(base_url=live.url, timeout=TIMEOUT) for _ in range(3 * limit)]
    try:
        calls = []
        for number, client in enumerate(clients):
            token = _CSRF.search(client.get("/console/signin").text)
            assert token
            data = {
                "email": email,
                "password": f"wrong guess {number}",
                "csrf_token": token.group(1),
            }
            calls.append(partial(client.post, "/console/signin", data=data))
        answers = at_once(*calls)
    finally:
        for client in clients:
            client.close()
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(401) <= limit, statuses


def test_a_cancel_while_a_worker_finishes_the_job_leaves_the_result(
    services: Services, tenant: Tenant
) -> None:
    """A cancel that read the job as running must not overwrite the result a worker is
    committing at that moment: the worker's transaction holds the row, the cancel waits
    for it, then sees the job completed and leaves it so. (The original cancel read
    without the row's lock, then wrote ``canceled`` over ``completed`` on PostgreSQL.)"""
    caller = Caller(tenant.organization_id, ("*",), Actor.operator())
    key = services.keys.create(caller, tenant.project_id, name="jobs", scopes=("jobs:*",))
    owner = JobOwner(tenant.organization_id, tenant.project_id, key.record.id)
    job = services.jobs.submit(
        owner,
        {
            "type": "ionq.circuit.v1",
            "input": {"qubits": 1, "circuit": [{"gate": "h", "target": 0}]},
        },
    )
    assert services.jobs.claim() is not None
    finishing = services.database.engine.connect()
    transaction = finishing.begin()
    finishing.execute(update(Job).where(Job.id == job.id).values(status=JobStatus.COMPLETED.value))
    with ThreadPoolExecutor(1) as pool:
        canceled = pool.submit(services.jobs.cancel, owner, job.id)
        # SQLite: the cancel waits for the write lock; PostgreSQL: for the row's lock.
        assert not _finished_within(canceled, 0.5)
        transaction.commit()
        finishing.close()
        assert canceled.result(timeout=TIMEOUT).status == JobStatus.COMPLETED.value
    assert services.jobs.get(owner, job.id).status == JobStatus.COMPLETED.value


def _finished_within(future: Future[object], seconds: float) -> bool:
    try:
        future.result(timeout=seconds)
    except TimeoutError:
        return False
    return True
