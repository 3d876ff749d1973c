"""``make run`` installs only what serving needs: no dev extras, so no keyrings.alt
plain-text "keyring" in the environment people serve and log in from (issue 11)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str, where: Path) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, where / name)
    result = subprocess.run(
        [make, "-n", target], cwd=where, capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout


def test_make_run_installs_no_dev_extras(tmp_path: Path) -> None:
    installs = [line for line in _dry_run("run", tmp_path).splitlines() if "pip install" in line]
    assert any("-e '.[postgres,redis]'" in line for line in installs), installs
    assert not any("dev" in line for line in installs), installs


def test_make_test_installs_the_dev_extras(tmp_path: Path) -> None:
    assert "-e '.[dev,postgres,redis]'" in _dry_run("lint", tmp_path)  # test needs lint


def test_ci_runs_make_test() -> None:
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text()
