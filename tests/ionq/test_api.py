"""The /v0.4 surface in process, on SQLite and PostgreSQL: auth, scopes, projects, validation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from keyplane.service.records import Quota, RateLimit
from keyplane.service.services import Services
from tests.ionq.conftest import BELL, ionq_headers, operator
from tests.support import Tenant

MakeKey = Callable[..., dict[str, str]]


def assert_ionq_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"statusCode", "error", "message"}
    assert body["statusCode"] == status
    assert body["message"]
    return body


def submit(client: TestClient, headers: dict[str, str], body: dict[str, Any] = BELL) -> str:
    response = client.post("/v0.4/jobs", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    job_id: str = response.json()["id"]
    return job_id


@pytest.fixture
def jobs_key(make_key: MakeKey) -> dict[str, str]:
    return make_key("jobs:read", "jobs:write")


@pytest.fixture
def headers(jobs_key: dict[str, str]) -> dict[str, str]:
    return ionq_headers(jobs_key)


# -- authentication -------------------------------------------------------------------


def test_whoami_takes_apikey_and_bearer(client: TestClient, make_key: MakeKey) -> None:
    key = make_key(name="no scopes")
    for authorization in (f"apiKey {key['key']}", f"Bearer {key['key']}"):
        response = client.get("/v0.4/whoami", headers={"Authorization": authorization})
        assert response.status_code == 200
        assert response.json()["key_id"] == key["id"]
        assert response.json()["key_name"] == "no scopes"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"Authorization": "apiKey kp_nonsense"}, id="malformed"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="other-scheme"),
    ],
)
def test_missing_or_bad_key_is_401_in_ionq_shape(
    client: TestClient, headers: dict[str, str]
) -> None:
    for method, path in (("GET", "/v0.4/whoami"), ("GET", "/v0.4/jobs"), ("POST", "/v0.4/jobs")):
        body = assert_ionq_error(client.request(method, path, headers=headers, json=BELL), 401)
        assert body["error"] == "Unauthorized"


def test_a_revoked_key_is_401_everywhere(
    client: TestClient, services: Services, tenant: Tenant, jobs_key: dict[str, str]
) -> None:
    headers = ionq_headers(jobs_key)
    job_id = submit(client, headers)
    services.keys.revoke(operator(tenant), jobs_key["id"])
    for method, path in (
        ("GET", f"/v0.4/jobs/{job_id}"),
        ("GET", f"/v0.4/jobs/{job_id}/results/probabilities"),
        ("PUT", f"/v0.4/jobs/{job_id}/status/cancel"),
        ("DELETE", f"/v0.4/jobs/{job_id}"),
        ("POST", "/v0.4/jobs"),
    ):
        body = assert_ionq_error(client.request(method, path, headers=headers, json=BELL), 401)
        assert "revoked" in body["message"]


def test_a_key_in_the_url_is_refused(client: TestClient, jobs_key: dict[str, str]) -> None:
    response = client.get(f"/v0.4/jobs?api_key={jobs_key['key']}", headers=ionq_headers(jobs_key))
    body = assert_ionq_error(response, 400)
    assert jobs_key["key"] not in response.text
    assert "URL" in body["message"]


def test_backends_are_public(client: TestClient, services: Services) -> None:
    listed = client.get("/v0.4/backends").json()
    assert [backend["backend"] for backend in listed] == ["simulator"]
    simulator = client.get("/v0.4/backends/simulator").json()
    assert simulator["qubits"] == services.settings.ionq_max_qubits
    assert simulator["status"] == "available"
    assert {"average_queue_time", "last_updated"} <= set(simulator)
    assert client.get("/v0.4/backends?status=offline").json() == []
    assert_ionq_error(client.get("/v0.4/backends/qpu.aria-1"), 404)


def test_unknown_paths_and_methods_answer_in_ionq_shape(
    client: TestClient, headers: dict[str, str]
) -> None:
    assert_ionq_error(client.get("/v0.4/nothing-here", headers=headers), 404)
    assert_ionq_error(client.patch("/v0.4/jobs", headers=headers), 405)


# -- scopes ------------------------------------------------------------------------------


def test_reading_needs_jobs_read_and_writing_jobs_write(
    client: TestClient, make_key: MakeKey, headers: dict[str, str]
) -> None:
    job_id = submit(client, headers)
    reader = ionq_headers(make_key("jobs:read"))
    writer = ionq_headers(make_key("jobs:write"))
    assert client.get(f"/v0.4/jobs/{job_id}", headers=reader).status_code == 200
    assert client.get("/v0.4/jobs", headers=reader).status_code == 200
    body = assert_ionq_error(client.post("/v0.4/jobs", json=BELL, headers=reader), 403)
    assert "jobs:write" in body["message"]
    assert_ionq_error(client.put(f"/v0.4/jobs/{job_id}/status/cancel", headers=reader), 403)
    assert_ionq_error(client.delete(f"/v0.4/jobs/{job_id}", headers=reader), 403)
    assert_ionq_error(client.get(f"/v0.4/jobs/{job_id}", headers=writer), 403)
    assert_ionq_error(client.get("/v0.4/jobs", headers=writer), 403)
    assert client.post("/v0.4/jobs", json=BELL, headers=writer).status_code == 200
    wildcard = ionq_headers(make_key("jobs:*"))
    assert client.get("/v0.4/jobs", headers=wildcard).status_code == 200
    unrelated = ionq_headers(make_key("keys:read"))
    assert_ionq_error(client.get("/v0.4/jobs", headers=unrelated), 403)


def test_job_calls_count_as_key_use(
    client: TestClient, services: Services, tenant: Tenant, jobs_key: dict[str, str]
) -> None:
    assert services.keys.get(operator(tenant), jobs_key["id"]).last_used_at is None
    client.get("/v0.4/jobs", headers={**ionq_headers(jobs_key), "User-Agent": "qiskit-ionq/1.1.1"})
    used = services.keys.get(operator(tenant), jobs_key["id"])
    assert used.last_used_at is not None
    assert used.last_used_user_agent == "qiskit-ionq/1.1.1"


# -- the job lifecycle -------------------------------------------------------------------


def test_a_job_runs_and_answers_as_ionq_does(
    client: TestClient, services: Services, headers: dict[str, str]
) -> None:
    body = copy.deepcopy(BELL)
    body.update(shots="250", name="bell", metadata={"shots": "250", "nested": {"a": [1, 2]}})
    job_id = submit(client, headers, body)
    queued = client.get(f"/v0.4/jobs/{job_id}", headers=headers).json()
    assert queued["status"] == "ready"
    assert queued["results"] is None
    assert "failure" not in queued
    assert_ionq_error(
        client.get(f"/v0.4/jobs/{job_id}/results/probabilities", headers=headers), 400
    )

    assert services.job_runner.run_pending() == 1
    job = client.get(f"/v0.4/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "completed"
    assert job["type"] == "ionq.circuit.v1"
    assert job["backend"] == "simulator"
    assert job["name"] == "bell"
    assert job["shots"] == 250
    assert job["metadata"] == {"shots": "250", "nested": {"a": [1, 2]}}
    assert job["stats"]["qubits"] == 2
    assert job["stats"]["gate_counts"] == {"1q": 1, "2q": 1}
    assert job["submitted_at"].endswith("Z")
    assert job["completed_at"] is not None
    assert isinstance(job["execution_duration_ms"], int)
    url = job["results"]["probabilities"]["url"]
    assert url == f"/v0.4/jobs/{job_id}/results/probabilities"
    probabilities = client.get(url, headers=headers).json()
    assert probabilities == pytest.approx({"0": 0.5, "3": 0.5})


def test_jobs_of_another_project_or_organization_are_not_found(
    client: TestClient,
    services: Services,
    tenant: Tenant,
    other_tenant: Tenant,
    make_key: MakeKey,
    headers: dict[str, str],
) -> None:
    job_id = submit(client, headers)
    services.job_runner.run_pending()
    other_project = services.projects.create_project(operator(tenant), "Elsewhere")
    neighbour = ionq_headers(make_key("jobs:*", project_id=other_project.id))
    stranger_key = services.keys.create(
        operator(other_tenant), other_tenant.project_id, name="x", scopes=["jobs:*"]
    )
    stranger = {"Authorization": f"apiKey {stranger_key.secret.reveal()}"}
    for outsider in (neighbour, stranger):
        for method, path in (
            ("GET", f"/v0.4/jobs/{job_id}"),
            ("GET", f"/v0.4/jobs/{job_id}/results/probabilities"),
            ("PUT", f"/v0.4/jobs/{job_id}/status/cancel"),
            ("DELETE", f"/v0.4/jobs/{job_id}"),
        ):
            assert_ionq_error(client.request(method, path, headers=outsider), 404)
        assert client.get("/v0.4/jobs", headers=outsider).json() == {"jobs": []}
    assert client.get(f"/v0.4/jobs/{job_id}", headers=headers).json()["status"] == "completed"


def test_cancel_a_queued_job_and_a_finished_one(
    client: TestClient, services: Services, headers: dict[str, str]
) -> None:
    queued = submit(client, headers)
    answer = client.put(f"/v0.4/jobs/{queued}/status/cancel", headers=headers).json()
    assert answer == {"id": queued, "status": "canceled"}
    assert services.job_runner.run_pending() == 0
    assert client.get(f"/v0.4/jobs/{queued}", headers=headers).json()["status"] == "canceled"

    done = submit(client, headers)
    services.job_runner.run_pending()
    answer = client.put(f"/v0.4/jobs/{done}/status/cancel", headers=headers).json()
    assert answer["status"] == "completed"


def test_delete_removes_the_job(
    client: TestClient, services: Services, headers: dict[str, str]
) -> None:
    job_id = submit(client, headers)
    assert client.delete(f"/v0.4/jobs/{job_id}", headers=headers).json() == {
        "id": job_id,
        "status": "deleted",
    }
    assert_ionq_error(client.get(f"/v0.4/jobs/{job_id}", headers=headers), 404)
    assert_ionq_error(client.delete(f"/v0.4/jobs/{job_id}", headers=headers), 404)
    assert services.job_runner.run_pending() == 0


def test_list_pages_filters_and_omits_next_on_the_last_page(
    client: TestClient, services: Services, headers: dict[str, str]
) -> None:
    ids = [submit(client, headers) for _ in range(3)]
    client.put(f"/v0.4/jobs/{ids[0]}/status/cancel", headers=headers)
    first = client.get("/v0.4/jobs?limit=2", headers=headers).json()
    assert [job["id"] for job in first["jobs"]] == [ids[2], ids[1]]
    second = client.get(f"/v0.4/jobs?limit=2&next={first['next']}", headers=headers).json()
    assert [job["id"] for job in second["jobs"]] == [ids[0]]
    assert "next" not in second
    canceled = client.get("/v0.4/jobs?status=canceled", headers=headers).json()
    assert [job["id"] for job in canceled["jobs"]] == [ids[0]]
    chosen = client.get(f"/v0.4/jobs?id={ids[1]}&id={ids[2]}", headers=headers).json()
    assert {job["id"] for job in chosen["jobs"]} == {ids[1], ids[2]}
    assert_ionq_error(client.get("/v0.4/jobs?status=running", headers=headers), 400)
    assert_ionq_error(client.get("/v0.4/jobs?limit=0", headers=headers), 400)
    assert_ionq_error(client.get("/v0.4/jobs?next=garbage", headers=headers), 400)


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BELL)
    body.update(changes)
    return body


def _circuit(*gates: dict[str, Any], qubits: int = 2) -> dict[str, Any]:
    return _with(input={"gateset": "qis", "qubits": qubits, "circuit": list(gates)})


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(_circuit({"gate": "u3", "targets": [0]}), "not supported", id="unknown-gate"),
        pytest.param(_circuit({"gate": "h", "targets": [5]}), "out of range", id="qubit-range"),
        pytest.param(_circuit(qubits=21), "at most 20", id="too-many-qubits"),
        pytest.param(_circuit({"gate": "rx", "targets": [0]}), "rotation", id="no-rotation"),
        pytest.param(_with(shots=0), "shots", id="zero-shots"),
        pytest.param(_with(shots="many"), "shots", id="shots-word"),
        pytest.param(_with(shots=True), "shots", id="shots-bool"),
        pytest.param(_with(type="ionq.qasm3.v1"), "not supported", id="qasm3"),
        pytest.param(
            _with(type="ionq.multi-circuit.v1", input={"circuits": []}),
            "1 to 100",
            id="no-circuits",
        ),
        pytest.param(
            _with(
                type="ionq.multi-circuit.v1",
                input={"qubits": 2, "circuits": [{"circuit": []}, {"circuit": [{"gate": "q"}]}]},
            ),
            "circuit 1",
            id="bad-second-circuit",
        ),
        pytest.param(_with(backend="qpu.aria-1"), "not available", id="qpu"),
        pytest.param(_with(noise={"model": "aria-1"}), "ideal", id="noise-model"),
        pytest.param(_with(metadata=["a"]), "metadata", id="metadata-list"),
        pytest.param(_with(name="n" * 201), "name", id="long-name"),
        pytest.param(_with(input=None), "input", id="no-input"),
        pytest.param(_with(input={"circuit": [], "gateset": "native"}), "qis", id="native"),
        pytest.param([1, 2], "object", id="body-list"),
    ],
)
def test_bad_job_requests_are_400(
    client: TestClient, headers: dict[str, str], body: Any, words: str
) -> None:
    response = client.post("/v0.4/jobs", json=body, headers=headers)
    message = assert_ionq_error(response, 400)["message"]
    assert words in message


def test_a_body_that_is_not_json_is_400(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(
        "/v0.4/jobs", content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert_ionq_error(response, 400)


def test_a_huge_body_is_413(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/v0.4/jobs", content=b" " * (5 * 1024 * 1024), headers=headers)
    assert_ionq_error(response, 413)


def test_a_job_that_cannot_run_fails_with_ionq_failure(
    client: TestClient, services: Services, headers: dict[str, str]
) -> None:
    job_id = submit(client, headers, _circuit(qubits=3))
    services.jobs.max_qubits = 2  # the operator lowered the limit after it was queued
    services.job_runner.run_pending()
    job = client.get(f"/v0.4/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "failed"
    assert job["failure"]["code"] == "CircuitTooLarge"
    assert job["failure"]["error"]
    assert job["results"] is None


def test_a_multi_circuit_job_answers_one_distribution_per_circuit(
    client: TestClient, services: Services, headers: dict[str, str]
) -> None:
    body = _with(
        type="ionq.multi-circuit.v1",
        input={
            "gateset": "qis",
            "qubits": 3,
            "circuits": [
                {"name": "bell", "circuit": BELL["input"]["circuit"]},
                {"circuit": [{"gate": "x", "targets": [2]}]},
            ],
        },
    )
    job_id = submit(client, headers, body)
    services.job_runner.run_pending()
    job = client.get(f"/v0.4/jobs/{job_id}", headers=headers).json()
    assert job["type"] == "ionq.multi-circuit.v1"
    assert job["stats"]["circuits"] == 2
    assert job["stats"]["gate_counts"] == {"1q": 2, "2q": 1}
    results = client.get(job["results"]["probabilities"]["url"], headers=headers).json()
    assert list(results) == [f"{job_id}-0", f"{job_id}-1"]
    assert results[f"{job_id}-0"] == pytest.approx({"0": 0.5, "3": 0.5})
    assert results[f"{job_id}-1"] == {"4": 1.0}
    aggregated = client.get(
        f"/v0.4/jobs/{job_id}/results/probabilities/aggregated", headers=headers
    ).json()
    assert aggregated == results


# -- rate limits and quotas -------------------------------------------------------------


def test_a_rate_limited_key_gets_429_with_retry_after_in_ionq_shape(
    client: TestClient, services: Services, tenant: Tenant
) -> None:
    created = services.keys.create(
        operator(tenant),
        tenant.project_id,
        name="limited",
        scopes=["jobs:read"],
        rate_limit=RateLimit(limit=2, window_seconds=60),
    )
    headers = {"Authorization": f"apiKey {created.secret.reveal()}"}
    first = client.get("/v0.4/jobs", headers=headers)
    assert first.status_code == 200
    assert first.headers["RateLimit-Limit"] == "2"
    assert client.get("/v0.4/jobs", headers=headers).status_code == 200
    refused = client.get("/v0.4/jobs", headers=headers)
    body = assert_ionq_error(refused, 429)
    assert body["error"] == "Too Many Requests"
    assert 0 < int(refused.headers["Retry-After"]) <= 60


def test_a_spent_quota_that_never_refills_is_403_not_a_retryable_429(
    client: TestClient, services: Services, tenant: Tenant
) -> None:
    created = services.keys.create(
        operator(tenant),
        tenant.project_id,
        name="one use",
        scopes=["jobs:read"],
        quota=Quota(limit=1),
    )
    headers = {"Authorization": f"apiKey {created.secret.reveal()}"}
    assert client.get("/v0.4/whoami", headers=headers).status_code == 200
    assert_ionq_error(client.get("/v0.4/whoami", headers=headers), 403)
