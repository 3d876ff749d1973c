"""The leak scanner: checksum-valid keys only, masked, git-aware, and `keyplane scan`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keyplane.client.scan import Scanner
from keyplane.core.keys import KeyFormat
from keyplane.service.records import Actor, Caller
from tests.live import LiveServer, subprocess_env

KEYPLANE = [sys.executable, "-m", "keyplane.cli"]


def lookalike(value: str) -> str:
    """The same key with its last checksum character changed: right shape, wrong checksum."""
    last = "B" if value[-1] != "B" else "C"
    return value[:-1] + last


def git(directory: Path, *arguments: str) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is needed for these tests (apt-get install git)")
    subprocess.run(["git", "-C", str(directory), *arguments], check=True, capture_output=True)


def test_only_checksum_valid_keys_count(tmp_path: Path) -> None:
    real = KeyFormat().generate().reveal()
    text = f"a = '{lookalike(real)}'\nb = 'kp_short'\n\n  token: {real}  # here\n"
    findings = list(Scanner().scan_text(text, "config.yml"))
    assert [(f.path, f.line, f.column, f.hint) for f in findings] == [
        ("config.yml", 4, 10, f"kp_...{real[-4:]}")
    ]
    assert real not in repr(findings)
    assert real not in str(findings[0])


def test_other_prefixes_are_found_only_when_asked(tmp_path: Path) -> None:
    other = KeyFormat("acme").generate().reveal()
    assert list(Scanner().scan_text(other, "f")) == []
    assert len(list(Scanner(["kp", "acme"]).scan_text(other, "f"))) == 1


def test_a_git_work_tree_is_read_through_git_ls_files(tmp_path: Path) -> None:
    leaked, ignored = KeyFormat().generate().reveal(), KeyFormat().generate().reveal()
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "src" / "app.py").write_text(f"KEY = '{leaked}'\n")
    (repo / ".env").write_text(f"KEYPLANE_API_KEY={ignored}\n")
    (repo / ".gitignore").write_text(".env\nbuild/\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.txt").write_text(ignored)
    (repo / "image.bin").write_bytes(b"\x00\x01" + leaked.encode())
    (repo / "big.txt").write_text("x" * 200 + "\n" + leaked)
    git(repo, "add", "src/app.py", ".gitignore", "image.bin")
    report = Scanner(max_bytes=100).scan([repo])
    assert [
        (Path(f.path).relative_to(repo).as_posix(), f.line, f.offset) for f in report.findings
    ] == [
        ("image.bin", None, 2),  # binaries are read too: byte offset, no line
        ("src/app.py", 1, 7),
    ]
    skipped = {Path(item.path).relative_to(repo).as_posix(): item.reason for item in report.skipped}
    assert skipped == {"big.txt": "too large", ".env": "ignored by git", "build": "ignored by git"}
    # Without git, the ignored .env counts too.
    everything = Scanner(use_git=False).scan([repo])
    assert {Path(f.path).name for f in everything.findings} == {
        ".env",
        "app.py",
        "big.txt",
        "image.bin",
        "out.txt",
    }
    assert [(Path(item.path).name, item.reason) for item in everything.skipped] == [
        (".git", "version control data")
    ]


def run_scan(
    home: Path, cwd: Path, *arguments: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KEYPLANE, "scan", *arguments],
        cwd=cwd,
        env=subprocess_env(home, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keyplane_scan_reports_exactly_the_real_key_masked_and_exits_1(tmp_path: Path) -> None:
    real = KeyFormat().generate().reveal()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "settings.py").write_text(f"# config\nAPI_KEY = '{real}'\n")
    (tree / "notes.md").write_text(f"example: {lookalike(real)}\n")
    found = run_scan(tmp_path, tmp_path, "tree")
    assert found.returncode == 1, found.stderr
    assert found.stdout.splitlines() == [f"tree/settings.py:2: kp_...{real[-4:]}"]
    assert "Found 1 key in 1 file" in found.stderr
    assert real not in found.stdout + found.stderr

    (tree / "settings.py").write_text("API_KEY = os.environ['KEYPLANE_API_KEY']\n")
    clean = run_scan(tmp_path, tree)  # no PATH: the working directory
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout == ""
    assert "No keys found (2 files, 90 bytes scanned)." in clean.stderr

    bad_prefix = run_scan(tmp_path, tree, "--prefix", "Not-A-Prefix")
    assert bad_prefix.returncode == 2
    assert "prefix" in bad_prefix.stderr


def test_keyplane_scan_revoke_revokes_what_it_found(server: LiveServer, tmp_path: Path) -> None:
    tenant = server.tenant()
    key_id, leaked = server.key(tenant, "jobs:run", name="leaked")
    (tmp_path / "leak.txt").write_text(f"{leaked}\n{leaked}\n{KeyFormat().generate().reveal()}\n")
    done = run_scan(
        tmp_path,
        tmp_path,
        "leak.txt",
        "--revoke",
        "--json",
        KEYPLANE_URL=server.url,
        KEYPLANE_API_KEY=tenant.key,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [f["line"] for f in report["findings"]] == [1, 2, 3]
    results = {item["key_id"]: item["result"] for item in report["revoked"]}
    assert results == {key_id: "revoked", None: "not a key of your organization"}
    assert leaked not in done.stdout + done.stderr
    operator = Caller(tenant.organization_id, ("*",), Actor.operator())
    assert server.services.keys.get(operator, key_id).status == "revoked"
    assert server.services.keys.get(operator, tenant.key_id).status == "active"


def test_keyplane_scan_says_where_how_and_what_it_skipped(tmp_path: Path) -> None:
    keys = [KeyFormat().generate().reveal() for _ in range(3)]
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.yaml").write_text(
        f"kind: Secret\ndata:\n  token: {base64.b64encode(keys[0].encode()).decode()}\n"
    )
    (tree / "b.bin").write_bytes(b"\x00" * 10 + keys[1].encode("utf-16-le"))
    (tree / "c.txt").write_text(keys[2] * 2000)  # over --max-bytes 64KiB
    (tree / "link.txt").symlink_to(tree / "a.yaml")
    os.mkfifo(tree / "pipe")
    done = run_scan(tmp_path, tmp_path, "tree", "--max-bytes", "64KiB")
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"tree/a.yaml:3: kp_...{keys[0][-4:]} (base64)",
        f"tree/b.bin@10: kp_...{keys[1][-4:]} (utf-16le)",
    ]
    assert "skipped tree/c.txt: too large (78000 bytes, over --max-bytes 65536)" in done.stderr
    assert "skipped tree/link.txt: symlink (not followed)" in done.stderr
    assert "skipped tree/pipe: not a regular file" in done.stderr
    size = (tree / "a.yaml").stat().st_size + (tree / "b.bin").stat().st_size
    assert (
        f"Found 2 keys in 2 files (2 files, {size} bytes scanned; skipped: 1 too large, "
        "1 symlink, 1 not a regular file)"
    ) in done.stderr
    assert not any(key in done.stdout + done.stderr for key in keys)

    as_json = json.loads(
        run_scan(tmp_path, tmp_path, "tree", "--max-bytes", "64KiB", "--json").stdout
    )
    assert [(f["path"], f["line"], f["offset"], f["encoding"]) for f in as_json["findings"]] == [
        ("tree/a.yaml", 3, 28, "base64"),
        ("tree/b.bin", None, 10, "utf-16le"),
    ]
    assert {item["path"]: item["reason"] for item in as_json["skipped"]} == {
        "tree/c.txt": "too large",
        "tree/link.txt": "symlink",
        "tree/pipe": "not a regular file",
    }
    assert as_json["skipped_counts"] == {"too large": 1, "symlink": 1, "not a regular file": 1}
    assert (as_json["files_scanned"], as_json["bytes_scanned"]) == (2, size)

    from_env = run_scan(tmp_path, tmp_path, "tree", KEYPLANE_SCAN_MAX_BYTES="64KiB")
    assert "skipped tree/c.txt: too large" in from_env.stderr
    assert "too large" not in run_scan(tmp_path, tmp_path, "tree").stderr  # 10 MiB by default

    bad_size = run_scan(tmp_path, tmp_path, "tree", "--max-bytes", "lots")
    assert bad_size.returncode == 2
    assert "--max-bytes" in bad_size.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_is_listed_as_skipped(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("nothing")
    secret.chmod(0)
    report = Scanner(use_git=False).scan([tmp_path])
    assert [(item.path, item.reason) for item in report.skipped] == [(str(secret), "unreadable")]


def test_keyplane_scan_finds_nothing_in_keyplanes_own_repository(tmp_path: Path) -> None:
    """The docs and the tests hold no real key: examples fail the checksum, tests make keys."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout: the repository's files cannot be told from the rest")
    done = run_scan(tmp_path, root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_the_pre_commit_hook_runs_keyplane_scan() -> None:
    hooks = (Path(__file__).parents[2] / ".pre-commit-hooks.yaml").read_text()
    assert "- id: keyplane-scan" in hooks
    assert "entry: keyplane scan" in hooks
    assert "language: python" in hooks
    # Binaries and UTF-16 files are not `text` to pre-commit: they must reach the scanner too.
    assert "types: [text]" not in hooks


def test_a_key_in_a_file_or_member_name_is_masked_in_what_scan_prints(tmp_path: Path) -> None:
    """Where a key was found is printed as it is: a file or an archive member named after a
    key (``kp_....env``) printed the key the scanner exists to hide."""
    import zipfile

    named = KeyFormat().generate().reveal()
    inside = KeyFormat().generate().reveal()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / f"{named}.env").write_text(f"KEYPLANE_API_KEY={inside}\n")
    with zipfile.ZipFile(tree / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"keys/{named}.txt", f"{inside}\n")
    for arguments in (("--no-git", "tree"), ("--no-git", "--json", "tree")):
        found = run_scan(tmp_path, tmp_path, *arguments)
        assert found.returncode == 1, found.stderr
        output = found.stdout + found.stderr
        assert named not in output
        assert inside not in output
        assert f"kp_...{named[-4:]}" in output
