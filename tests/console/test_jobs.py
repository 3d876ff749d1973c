"""The Jobs page and keys for IonQ's clients, over HTTP, on SQLite and PostgreSQL.

Jobs are submitted the way IonQ's clients submit them (``POST /v0.4/jobs``
with a key made in the console) and run with ``job_runner.run_pending()``,
so each test decides which job is in which state.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from keyplane.console.formatting import duration, exact
from keyplane.core import scopes as scope_rules
from keyplane.ionq.jobs.records import JobOwner
from keyplane.ionq.web.console import PAGE_SIZE
from keyplane.service.services import Services
from keyplane.storage.models import Job
from tests.console.conftest import Browser
from tests.ionq.conftest import BELL
from tests.support import Clock, Tenant

MakeBrowser = Callable[..., Browser]
JOB_SCOPES = ["jobs:read", "jobs:write"]


def create_key(
    browser: Browser, name: str, scopes: list[str], project_id: str | None = None
) -> tuple[str, dict[str, str]]:
    """A key made with the console's create form: its id and IonQ-style headers."""
    response = browser.post(
        "/console/keys",
        {"project": project_id or browser.project_id(), "name": name, "scopes": scopes},
    )
    assert response.status_code == 201, response.text
    value = re.search(r'value="(kp_\w+)"', response.text)
    key_id = re.search(r"/console/keys/(key_\w+)", response.text)
    assert value
    assert key_id
    return key_id.group(1), {"Authorization": f"apiKey {value.group(1)}"}


def submit(
    client: TestClient,
    headers: dict[str, str],
    *,
    qubits: int = 2,
    shots: int = 1000,
    name: str | None = None,
) -> str:
    body: dict[str, Any] = copy.deepcopy(BELL)
    body["shots"] = shots
    body["input"]["qubits"] = qubits
    if name is not None:
        body["name"] = name
    response = client.post("/v0.4/jobs", json=body, headers=headers)
    assert response.status_code == 200, response.text
    job_id: str = response.json()["id"]
    return job_id


def cells(page: str, job_id: str) -> dict[str, str]:
    """The row of ``job_id``: each column's label -> its HTML."""
    row = re.search(rf'<tr data-job-id="{job_id}">(.*?)</tr>', page, re.S)
    assert row, f"{job_id} is not listed"
    found = re.findall(r'<t[hd][^>]*data-label="([^"]+)"[^>]*>(.*?)</t[hd]>', row.group(1), re.S)
    return dict(found)


def text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def listed(page: str) -> list[str]:
    return re.findall(r'<tr data-job-id="(job_\w+)">', page)


def test_the_page_lists_each_job_with_status_qubits_shots_key_and_outcome(
    owner: Browser, client: TestClient, services: Services, clock: Clock
) -> None:
    key_id, headers = create_key(owner, "notebook", JOB_SCOPES)
    done = submit(client, headers, name="bell", shots=500)
    services.job_runner.run_pending()
    failed = submit(client, headers, qubits=3)
    services.jobs.max_qubits = 2  # the operator lowered the limit after it was queued
    services.job_runner.run_pending()
    services.jobs.max_qubits = 20
    canceled = submit(client, headers)
    assert client.put(f"/v0.4/jobs/{canceled}/status/cancel", headers=headers).status_code == 200
    queued = submit(client, headers, qubits=3, shots=100)
    submitted_at = clock()
    clock.advance(timedelta(minutes=5))

    page = owner.get("/console/jobs")
    assert page.status_code == 200
    assert "<h1>Jobs</h1>" in page.text
    assert re.search(r'href="/console/jobs" aria-current="page">Jobs</a>', page.text)
    assert listed(page.text) == [queued, canceled, failed, done]

    row = cells(page.text, done)
    assert text(row["Job"]) == f"{done} bell"
    assert text(row["Status"]) == "Completed"
    assert (text(row["Qubits"]), text(row["Shots"]), text(row["Circuits"])) == ("2", "500", "1")
    assert f'href="/console/keys/{key_id}"' in row["Key"]
    assert text(row["Key"]) == "notebook"
    assert text(row["Submitted"]) == "5 minutes ago"
    assert f'title="{exact(submitted_at)}"' in row["Submitted"]
    took = client.get(f"/v0.4/jobs/{done}", headers=headers).json()["execution_duration_ms"]
    assert text(row["Duration or failure"]) == duration(took)

    row = cells(page.text, failed)
    assert text(row["Status"]) == "Failed"
    assert text(row["Qubits"]) == "3"
    assert "CircuitTooLarge" in text(row["Duration or failure"])

    row = cells(page.text, canceled)
    assert text(row["Status"]) == "Canceled"
    assert text(row["Duration or failure"]).startswith("Canceled")

    row = cells(page.text, queued)
    assert text(row["Job"]) == queued
    assert text(row["Status"]) == "Ready"
    assert (text(row["Qubits"]), text(row["Shots"])) == ("3", "100")
    assert text(row["Duration or failure"]) == "Waiting for a worker"


def test_status_tabs_filter_the_jobs(
    owner: Browser, client: TestClient, services: Services
) -> None:
    _, headers = create_key(owner, "notebook", JOB_SCOPES)
    completed = submit(client, headers)
    services.job_runner.run_pending()
    canceled = submit(client, headers)
    client.put(f"/v0.4/jobs/{canceled}/status/cancel", headers=headers)
    started = submit(client, headers)
    claimed = services.jobs.claim()  # a worker holds it: started, not finished
    assert claimed is not None
    assert claimed.id == started
    ready = submit(client, headers)
    submitted = submit(client, headers)
    with services.database.write() as session:  # IonQ's other queued status
        session.execute(update(Job).where(Job.id == submitted).values(status="submitted"))

    def tab(status: str) -> list[str]:
        page = owner.get(f"/console/jobs?status={status}")
        assert page.status_code == 200
        assert re.search(rf'status={status}" aria-current="page"', page.text)
        return listed(page.text)

    assert tab("all") == [submitted, ready, started, canceled, completed]
    assert tab("queued") == [submitted, ready]
    assert tab("started") == [started]
    assert tab("completed") == [completed]
    assert tab("canceled") == [canceled]
    assert tab("failed") == []
    assert "No failed jobs" in owner.get("/console/jobs?status=failed").text
    page = owner.get("/console/jobs?status=started").text
    assert text(cells(page, started)["Status"]) == "Started"
    assert text(cells(page, started)["Duration or failure"]).startswith("Running since")
    queued_page = owner.get("/console/jobs?status=queued").text
    assert text(cells(queued_page, submitted)["Status"]) == "Submitted"

    assert owner.get("/console/jobs?status=running").status_code == 422


def test_pages_follow_the_cursor_within_a_filter(
    owner: Browser, client: TestClient, services: Services
) -> None:
    _, headers = create_key(owner, "batch", JOB_SCOPES)
    done = submit(client, headers)
    services.job_runner.run_pending()
    queued = [submit(client, headers) for _ in range(PAGE_SIZE + 1)]

    first = owner.get("/console/jobs?status=queued")
    assert listed(first.text) == queued[::-1][:PAGE_SIZE]
    older = re.search(r'href="(/console/jobs\?[^"]+)">Older jobs</a>', first.text)
    assert older
    assert "Newest jobs" not in first.text
    second = owner.get(html.unescape(older.group(1)))
    assert second.status_code == 200
    assert listed(second.text) == [queued[0]]
    assert done not in second.text
    assert "Older jobs" not in second.text
    assert "Newest jobs" in second.text

    assert owner.get("/console/jobs?cursor=not-a-cursor").status_code == 422


def test_the_project_switcher_shows_each_projects_own_jobs(
    owner: Browser, client: TestClient, clock: Clock
) -> None:
    _, default_headers = create_key(owner, "default", JOB_SCOPES)
    in_default = submit(client, default_headers)
    clock.advance(timedelta(seconds=1))  # the oldest project is the one shown first
    created = owner.post("/console/projects", {"name": "Quantum"})
    quantum = re.search(r"project=(prj_\w+)", created.headers["location"])
    assert quantum
    _, quantum_headers = create_key(owner, "quantum", JOB_SCOPES, project_id=quantum.group(1))
    in_quantum = submit(client, quantum_headers)

    page = owner.get(f"/console/jobs?project={quantum.group(1)}")
    assert listed(page.text) == [in_quantum]
    assert re.search(rf'<option value="{quantum.group(1)}" selected>Quantum</option>', page.text)
    assert listed(owner.get("/console/jobs").text) == [in_default]


def test_names_from_the_api_are_escaped(owner: Browser, client: TestClient) -> None:
    _, headers = create_key(owner, "notebook", JOB_SCOPES)
    job_id = submit(client, headers, name='<script>alert("x")</script>')
    page = owner.get("/console/jobs").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in cells(page, job_id)["Job"]


def test_another_organizations_project_is_not_found(
    owner: Browser, client: TestClient, services: Services, other_tenant: Tenant
) -> None:
    owner_of_other = JobOwner(
        other_tenant.organization_id, other_tenant.project_id, other_tenant.key_id
    )
    theirs = services.jobs.submit(owner_of_other, BELL).id
    _, headers = create_key(owner, "notebook", JOB_SCOPES)
    ours = submit(client, headers)

    refused = owner.get(f"/console/jobs?project={other_tenant.project_id}")
    assert refused.status_code == 404
    assert "Not found, or not in your organization." in refused.text
    assert theirs not in refused.text
    assert owner.get("/console/jobs?project=prj_doesnotexist").status_code == 404
    assert listed(owner.get("/console/jobs").text) == [ours]


def test_a_member_sees_the_jobs_and_makes_a_key_for_ionq_clients(
    owner: Browser, client: TestClient, make_browser: MakeBrowser
) -> None:
    _, headers = create_key(owner, "owner notebook", JOB_SCOPES)
    owners_job = submit(client, headers)
    member = make_browser()
    assert member.join(owner.invite("member@acme.test")).status_code == 303

    page = member.get("/console/jobs")
    assert page.status_code == 200
    assert 'href="/console/jobs"' in member.get("/console/keys").text
    assert listed(page.text) == [owners_job]

    dialog = member.get("/console/keys").text
    assert 'name="scopes" value="jobs:read"' in dialog
    assert 'name="scopes" value="jobs:write"' in dialog
    assert 'name="scopes" value="*"' not in dialog
    assert 'name="scopes" value="keys:write"' not in dialog
    ticked = member.get(f"/console/keys/new?project={member.project_id()}&scope=*&scope=jobs:write")
    assert 'value="jobs:write" checked' in ticked.text
    assert 'value="*"' not in ticked.text
    _, member_headers = create_key(member, "member notebook", JOB_SCOPES)
    members_job = submit(client, member_headers)
    assert listed(member.get("/console/jobs").text) == [members_job, owners_job]


def test_signing_in_is_required(browser: Browser) -> None:
    response = browser.get("/console/jobs?status=failed")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/signin?next=")


def test_an_empty_project_explains_how_to_submit_jobs(owner: Browser) -> None:
    page = owner.get("/console/jobs").text
    assert "No jobs yet" in page
    assert "export IONQ_API_URL=http://console.test/v0.4" in page
    assert "<code>jobs:write</code>" in page
    link = re.search(r'href="(/console/keys/new\?[^"]+)">Create a key for IonQ clients', page)
    assert link
    form = owner.get(html.unescape(link.group(1)))
    assert form.status_code == 200
    for scope in JOB_SCOPES:
        assert f'value="{scope}" checked' in form.text
    assert 'value="keys:read" checked' not in form.text


# -- job scopes in the create dialog -------------------------------------------------


def test_the_create_dialog_offers_every_scope_keyplane_checks(owner: Browser) -> None:
    dialog = owner.get("/console/keys").text
    offered = re.findall(r'name="scopes" value="([^"]+)"', dialog)
    assert sorted(offered) == sorted([scope_rules.ALL, *scope_rules.KNOWN_SCOPES])
    assert "Jobs API for IonQ clients (/v0.4)" in dialog


def scopes_shown(browser: Browser, key_id: str) -> list[str]:
    """The scopes the key detail page lists."""
    found = re.search(r"<dt>Scopes</dt><dd>(.*?)</dd>", browser.get(f"/console/keys/{key_id}").text)
    assert found
    return re.findall(r'<code class="tag">([^<]+)</code>', found.group(1))


@pytest.mark.parametrize(
    ("scopes", "can_read"),
    [
        pytest.param(["jobs:write"], False, id="write-only"),
        pytest.param(JOB_SCOPES, True, id="read-and-write"),
    ],
)
def test_a_key_made_in_the_dialog_submits_jobs_and_keeps_its_scopes_when_rolled(
    owner: Browser, client: TestClient, scopes: list[str], can_read: bool
) -> None:
    key_id, headers = create_key(owner, "ionq", scopes)
    job_id = submit(client, headers)
    read = client.get(f"/v0.4/jobs/{job_id}", headers=headers)
    assert read.status_code == (200 if can_read else 403)

    assert scopes_shown(owner, key_id) == sorted(scopes)

    rolled = owner.post(f"/console/keys/{key_id}/roll", {"grace_seconds": "0"})
    assert rolled.status_code == 201
    value = re.search(r'value="(kp_\w+)"', rolled.text)
    new_id = re.search(r"/console/keys/(key_\w+)", rolled.text)
    assert value
    assert new_id
    assert scopes_shown(owner, new_id.group(1)) == sorted(scopes)
    submit(client, {"Authorization": f"apiKey {value.group(1)}"})
    assert client.post("/v0.4/jobs", json=BELL, headers=headers).status_code == 401


def test_a_key_without_jobs_write_cannot_submit(owner: Browser, client: TestClient) -> None:
    _, headers = create_key(owner, "reader", ["jobs:read"])
    assert client.post("/v0.4/jobs", json=BELL, headers=headers).status_code == 403
    assert client.get("/v0.4/jobs", headers=headers).json() == {"jobs": []}
