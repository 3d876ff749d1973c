"""The SDK stays light: a key holder's program never loads the server's stack."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import keyplane.client as keyplane_client

SERVER_MODULES = ("fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "pydantic", "argon2")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("import keyplane.client", id="import-keyplane.client"),
        pytest.param("import keyplane; keyplane.Client", id="keyplane.Client"),
        pytest.param("import keyplane.client.scan", id="scanner"),
    ],
)
def test_the_sdk_does_not_import_the_server_stack(statement: str) -> None:
    modules = loaded_after(statement)
    heavy = {name for name in modules if name.split(".")[0] in SERVER_MODULES}
    assert heavy == set()
    assert not {name for name in modules if name.startswith(("keyplane.service", "keyplane.api"))}
    assert "keyplane.config" not in modules


def test_import_keyplane_alone_loads_nothing_but_itself() -> None:
    modules = loaded_after("import keyplane")
    assert "httpx" not in modules
    assert {name for name in modules if name.startswith("keyplane")} == {"keyplane"}


def test_the_public_names_are_exported_from_the_top_level_package() -> None:
    import keyplane
    import keyplane.client

    # keyplane/__init__.py cannot import the list from keyplane.client (that would
    # load the SDK on ``import keyplane``), so the two lists are checked to agree.
    top_level = set(keyplane.__all__) - {"__version__"}
    assert top_level == set(keyplane.client.__all__) - {"NOT_GIVEN"}
    assert set(dir(keyplane)) >= top_level
    for name in top_level:
        assert getattr(keyplane, name) is getattr(keyplane.client, name)
    with pytest.raises(AttributeError):
        _ = keyplane.NoSuchThing  # type: ignore[attr-defined]


CLIENT_DIR = Path(keyplane_client.__file__).parent


def _root_package_imports(path: Path) -> list[str]:
    """Each ``import keyplane`` / ``from keyplane import ...`` statement in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [
                f"{path.name}:{node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name == "keyplane"
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "keyplane":
            found.append(f"{path.name}:{node.lineno}: from keyplane import ...")
    return found


def test_the_sdk_never_imports_the_root_package() -> None:
    # client/ could be shipped on its own: it reaches keyplane.core and its own modules
    # by their full names, never through keyplane/__init__.py (docstring examples aside).
    files = sorted(CLIENT_DIR.rglob("*.py"))
    assert files
    offending = [line for path in files for line in _root_package_imports(path)]
    assert offending == []


def test_the_boundary_check_sees_a_root_package_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""\n>>> import keyplane\n"""\nimport keyplane\nfrom keyplane import x\n')
    assert _root_package_imports(sample) == [
        "sample.py:4: import keyplane",
        "sample.py:5: from keyplane import ...",
    ]


def test_one_version_read_once() -> None:
    import keyplane
    from keyplane.client import _http, _version

    assert keyplane.__version__ is _version.__version__
    assert _version.__version__ == importlib.metadata.version("keyplane")
    assert f"keyplane-python/{_version.__version__} " in _http.USER_AGENT
    assert "__version__" in dir(keyplane)
