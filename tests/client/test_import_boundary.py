"""The SDK stays light: a key holder's program never loads the server's stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
