"""IonQ's own PyPI clients, unmodified, against a real ``keyplane serve``.

qiskit-ionq (pointed by ``IONQ_API_URL``), cirq-ionq (``remote_host``) and
ionq (``base_url``) each run circuits with a key made by ``keyplane admin``;
their probabilities must match an independent simulator (qiskit's
``Statevector``, cirq's simulator). With the key revoked, each raises its own
authentication error at once. The clients run in their own environment
(``.venv-ionq``, see tests/ionq/clients/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_ENV
from tests.processes import admin, fresh, server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).with_name("clients")
PYTHON_ENV = "KEYPLANE_TEST_IONQ_PYTHON"


def client_python() -> str:
    """The clients' interpreter; skip (or fail in CI) when it is missing."""
    python = os.environ.get(PYTHON_ENV) or str(ROOT / ".venv-ionq" / "bin" / "python")
    problem = None
    if not Path(python).exists():
        problem = f"{python} does not exist"
    else:
        check = subprocess.run(
            [python, "-c", "import qiskit_ionq, cirq_ionq, ionq"], capture_output=True, timeout=120
        )
        if check.returncode != 0:
            problem = f"{python} cannot import the clients: {check.stderr.decode()[-300:]}"
    if problem is None:
        return python
    message = (
        f"IonQ's clients are not installed ({problem}); `make ionq-clients` installs them, "
        f"or set {PYTHON_ENV}"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 makes this mandatory)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def python() -> str:
    return client_python()


@pytest.fixture(scope="module")
def keyplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running server, a management key and a jobs key made by the admin CLI."""
    tmp = tmp_path_factory.mktemp("ionq-e2e")
    data_dir = tmp / "data"
    boot = admin(
        data_dir, "bootstrap", "--org", "Acme", "--project", "Quantum", "--email", "q@acme.test"
    )
    created = admin(
        data_dir,
        "create-key",
        *("--org", "Acme", "--project", "Quantum", "--name", "notebook"),
        *("--scope", "jobs:read", "--scope", "jobs:write"),
    )
    management = boot["key"]
    assert isinstance(management, dict)
    log = tmp / "server.log"
    with server(data_dir, log, workers=2) as base:
        yield {
            "log": str(log),
            "data_dir": str(data_dir),
            "url": base,
            "key": str(created["key"]),
            "key_id": str(created["id"]),
            "management": str(management["key"]),
        }


def run_client(python: str, name: str, mode: str, url: str, key: str) -> dict[str, object]:
    env = {**os.environ, "KEYPLANE_TEST_URL": url, "KEYPLANE_TEST_KEY": key}
    for variable in ("IONQ_API_KEY", "IONQ_API_URL", "IONQ_REMOTE_HOST", "IONQ_BASE_URL"):
        env.pop(variable, None)
    done = subprocess.run(
        [python, str(CLIENTS / f"{name}_client.py"), mode],
        env=env,
        capture_output=True,
        timeout=240,
        cwd=CLIENTS,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    output: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return output


CLIENT_NAMES = ["qiskit", "cirq", "ionq"]


@pytest.mark.parametrize("name", CLIENT_NAMES)
def test_each_client_runs_circuits_and_matches_an_independent_simulator(
    python: str, keyplane: dict[str, str], name: str
) -> None:
    output = run_client(python, name, "circuits", keyplane["url"], keyplane["key"])
    results = output["results"]
    assert isinstance(results, list)
    assert len(results) >= 2
    for result in results:
        remote, reference = result["remote"], result["reference"]
        # qiskit-ionq keeps outcomes it sampled; every likely outcome is there.
        assert {k for k, p in reference.items() if p > 1e-3} <= set(remote), result["name"]
        for outcome, probability in remote.items():
            assert probability == pytest.approx(reference[outcome], abs=1e-9), result["name"]
        assert sum(remote.values()) == pytest.approx(1, abs=1e-9)
    if "listed" in output:  # the client's own job listing shows this key's jobs
        listed = output["listed"]
        assert isinstance(listed, list)
        assert {result["job_id"] for result in results} <= set(listed)
    headers = {"Authorization": f"apiKey {keyplane['key']}"}
    for result in results:
        job = fresh.get(f"{keyplane['url']}/v0.4/jobs/{result['job_id']}", headers=headers).json()
        assert job["status"] == "completed"


def test_jobs_count_as_key_use(python: str, keyplane: dict[str, str]) -> None:
    del python
    fresh.get(
        f"{keyplane['url']}/v0.4/jobs", headers={"Authorization": f"apiKey {keyplane['key']}"}
    )
    time.sleep(1.5)  # the last-used buffer is written at least once a second
    key = fresh.get(
        f"{keyplane['url']}/api/v1/keys/{keyplane['key_id']}",
        headers={"Authorization": f"Bearer {keyplane['management']}"},
    ).json()
    assert key["last_used_at"] is not None


EXPECTED_ERRORS = {"qiskit": "IonQAPIError", "cirq": "IonQException", "ionq": "HTTPError"}


@pytest.mark.parametrize("name", CLIENT_NAMES)
def test_a_job_over_the_work_budget_is_refused_and_each_client_shows_why(
    python: str, keyplane: dict[str, str], name: str
) -> None:
    """600 gates on 20 qubits: the clients raise their own error with the limit's name."""
    output = run_client(python, name, "too-large", keyplane["url"], keyplane["key"])
    assert output["error"] == EXPECTED_ERRORS[name], output
    assert output["status"] == 400, output
    assert "KEYPLANE_JOB_MAX_WORK" in str(output["message"]), output
    assert float(str(output["seconds"])) < 30, output  # refused, not retried


def test_with_a_revoked_key_each_client_raises_its_authentication_error_at_once(
    python: str, keyplane: dict[str, str]
) -> None:
    revoked = fresh.delete(
        f"{keyplane['url']}/api/v1/keys/{keyplane['key_id']}",
        headers={"Authorization": f"Bearer {keyplane['management']}"},
    )
    assert revoked.status_code == 200
    # The server runs 2 workers: the one that did not revoke learns of it from the
    # change feed within a second (docs/deployment.md), which is the promise.
    time.sleep(1.05)
    for name in CLIENT_NAMES:
        output = run_client(python, name, "revoked", keyplane["url"], keyplane["key"])
        assert output["error"] == EXPECTED_ERRORS[name], output
        assert output["status"] == 401, output
        assert float(str(output["seconds"])) < 30, output  # no hour of retries


def test_no_key_reaches_the_log_or_the_database(python: str, keyplane: dict[str, str]) -> None:
    del python
    secrets = [keyplane["key"].encode(), keyplane["management"].encode()]
    for path in [Path(keyplane["log"]), *Path(keyplane["data_dir"]).rglob("*")]:
        if path.is_file():
            content = path.read_bytes()
            assert not any(secret in content for secret in secrets), f"a key leaked into {path}"
    assert "POST /v0.4/jobs" in Path(keyplane["log"]).read_text()
