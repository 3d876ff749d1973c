"""GitHub secret scanning reports: signature, checksum, revocation, audit, answer."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keyplane.config import ConfigError, Settings
from keyplane.service.keys.leaks import GITHUB_ACTOR, GitHubKeyring
from keyplane.service.services import Services
from tests.security.github import GitHubSigner, report
from tests.support import Tenant, bearer

URL = "/api/v1/leaks/github"


@pytest.fixture
def signer(services: Services) -> GitHubSigner:
    signer = GitHubSigner.generate()
    services.leaks.keyring = GitHubKeyring.from_document(signer.document())
    return signer


def _create(client: TestClient, tenant: Tenant, name: str = "leaky") -> dict[str, str]:
    response = client.post(
        f"/api/v1/projects/{tenant.project_id}/keys",
        json={"name": name, "scopes": ["keys:read"]},
        headers=tenant.headers,
    )
    assert response.status_code == 201
    created: dict[str, str] = response.json()
    return created


def test_if_a_real_key_is_reported_then_it_is_revoked_audited_and_labelled_true_positive(
    client: TestClient, tenant: Tenant, signer: GitHubSigner
) -> None:
    created = _create(client, tenant)
    assert client.get("/api/v1/whoami", headers=bearer(created["key"])).status_code == 200
    leak_url = "https://github.com/octo/repo/blob/abc/settings.py#L9"
    body = report(created["key"], url=leak_url)

    response = client.post(URL, content=body, headers=signer.headers(body))

    assert response.status_code == 200, response.text
    assert response.json() == [
        {
            "token_hash": hashlib.sha256(created["key"].encode()).hexdigest(),
            "token_type": "keyplane_api_key",
            "label": "true_positive",
        }
    ]
    # Revoked at once, in this process.
    refused = client.get("/api/v1/whoami", headers=bearer(created["key"]))
    assert refused.status_code == 401
    assert refused.json()["code"] == "REVOKED"
    key = client.get(f"/api/v1/keys/{created['id']}", headers=tenant.headers).json()
    assert key["status"] == "revoked"
    events = client.get(
        "/api/v1/audit-events", params={"key_id": created["id"]}, headers=tenant.headers
    ).json()["items"]
    leaked = [event for event in events if event["action"] == "key.leaked"]
    assert len(leaked) == 1
    assert leaked[0]["actor"] == GITHUB_ACTOR
    assert leaked[0]["details"]["url"] == leak_url
    revoked = [event for event in events if event["action"] == "key.revoked"]
    assert revoked[0]["details"]["url"] == leak_url


def test_if_tokens_are_not_keys_then_they_are_false_positives_and_nothing_changes(
    client: TestClient, tenant: Tenant, signer: GitHubSigner, services: Services
) -> None:
    created = _create(client, tenant)
    real = created["key"]
    wrong_checksum = real[:-1] + ("A" if real[-1] != "A" else "B")
    unknown = services.settings.key_format.generate().reveal()
    body = report("kp_not_a_key", wrong_checksum, unknown)

    response = client.post(URL, content=body, headers=signer.headers(body))

    assert response.status_code == 200
    assert [item["label"] for item in response.json()] == ["false_positive"] * 3
    assert client.get("/api/v1/whoami", headers=bearer(real)).status_code == 200
    assert services.leaks.leaks(tenant.organization_id) == []


def test_if_a_revoked_key_is_reported_again_elsewhere_then_it_is_a_true_positive_recorded_again(
    client: TestClient, tenant: Tenant, signer: GitHubSigner, services: Services
) -> None:
    created = _create(client, tenant)
    for url in ("https://github.com/octo/a/blob/1/x.py", "https://github.com/octo/b/blob/2/y.py"):
        body = report(created["key"], url=url)
        response = client.post(URL, content=body, headers=signer.headers(body))
        assert response.json()[0]["label"] == "true_positive"
    leaks = services.leaks.leaks(tenant.organization_id)
    assert [leak.revoked for leak in leaks] == [False, True]  # newest first


def test_if_the_same_leak_is_reported_again_then_it_is_a_true_positive_recorded_once(
    client: TestClient, tenant: Tenant, signer: GitHubSigner, services: Services
) -> None:
    created = _create(client, tenant)
    body = report(created["key"], created["key"])  # GitHub's retry, or a token found twice
    for _ in range(2):
        response = client.post(URL, content=body, headers=signer.headers(body))
        assert [verdict["label"] for verdict in response.json()] == ["true_positive"] * 2
    leaks = services.leaks.leaks(tenant.organization_id)
    assert [leak.revoked for leak in leaks] == [True]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        pytest.param({}, 401, "MISSING_SIGNATURE", id="no-headers"),
        pytest.param(
            {"GITHUB-PUBLIC-KEY-IDENTIFIER": "x"}, 401, "MISSING_SIGNATURE", id="no-signature"
        ),
        pytest.param(
            {"GITHUB-PUBLIC-KEY-IDENTIFIER": "unknown", "GITHUB-PUBLIC-KEY-SIGNATURE": "AAAA"},
            403,
            "INVALID_SIGNATURE",
            id="unknown-identifier",
        ),
    ],
)
def test_if_the_signature_headers_are_missing_or_unknown_then_the_report_is_refused(
    client: TestClient,
    tenant: Tenant,
    signer: GitHubSigner,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    created = _create(client, tenant)
    response = client.post(URL, content=report(created["key"]), headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert created["key"] not in response.text
    assert client.get("/api/v1/whoami", headers=bearer(created["key"])).status_code == 200


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param("body", id="body-changed-after-signing"),
        pytest.param("other-key", id="signed-by-another-key"),
        pytest.param("garbage", id="signature-not-base64"),
    ],
)
def test_if_the_signature_does_not_verify_then_the_report_is_refused(
    client: TestClient, tenant: Tenant, signer: GitHubSigner, tamper: str
) -> None:
    created = _create(client, tenant)
    body = report(created["key"])
    headers = signer.headers(body)
    if tamper == "body":
        body = report(created["key"], url="https://github.com/evil")
    elif tamper == "other-key":
        headers["GITHUB-PUBLIC-KEY-SIGNATURE"] = GitHubSigner.generate(signer.identifier).sign(body)
    else:
        headers["GITHUB-PUBLIC-KEY-SIGNATURE"] = "not base64 !!"
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 403
    assert response.json()["code"] == "INVALID_SIGNATURE"
    assert client.get("/api/v1/whoami", headers=bearer(created["key"])).status_code == 200


def test_if_no_github_keys_are_configured_then_every_report_is_refused(
    client: TestClient, tenant: Tenant
) -> None:
    signer = GitHubSigner.generate()
    body = report("kp_x")
    response = client.post(URL, content=body, headers=signer.headers(body))
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"token": "x"}', id="not-a-list"),
        pytest.param(b'[{"token": 5, "type": "t", "url": "u"}]', id="wrong-type"),
        pytest.param(b'[{"type": "t", "url": "u"}]', id="missing-token"),
    ],
)
def test_if_a_signed_report_is_malformed_then_it_is_a_422_that_echoes_nothing(
    client: TestClient, signer: GitHubSigner, body: bytes
) -> None:
    response = client.post(URL, content=body, headers=signer.headers(body))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_if_the_keys_file_is_configured_then_it_is_loaded_and_a_bad_one_fails_at_start(
    tmp_path: Path, settings: Settings
) -> None:
    signer = GitHubSigner.generate()
    good = tmp_path / "github-keys.json"
    good.write_text(signer.document())
    loaded = Settings.from_env(
        {
            "KEYPLANE_DATA_DIR": str(tmp_path),
            "KEYPLANE_DATABASE_URL": settings.database_url,
            "KEYPLANE_GITHUB_KEYS_FILE": str(good),
        }
    )
    services = Services.open(loaded)
    try:
        assert signer.identifier in services.leaks.keyring.keys
    finally:
        services.close()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"public_keys": [{"key_identifier": "a", "key": "nope"}]}))
    with pytest.raises(ConfigError, match="KEYPLANE_GITHUB_KEYS_FILE"):
        GitHubKeyring.from_file(bad)
    with pytest.raises(ConfigError, match="KEYPLANE_GITHUB_KEYS_FILE"):
        GitHubKeyring.from_file(tmp_path / "missing.json")


def test_if_the_keys_file_is_bad_then_serve_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "github.json"
    bad.write_text("not json")
    done = subprocess.run(
        [sys.executable, "-m", "keyplane.cli", "serve", "--port", "0"],
        env={
            **os.environ,
            "KEYPLANE_DATA_DIR": str(tmp_path / "data"),
            "KEYPLANE_GITHUB_KEYS_FILE": str(bad),
        },
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert b"KEYPLANE_GITHUB_KEYS_FILE" in done.stderr
    assert b"Traceback" not in done.stderr
