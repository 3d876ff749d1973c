"""The import rules of docs/architecture.md, checked on every module of src/keyplane.

Each module belongs to the layer of the longest prefix in :data:`ALLOWED`; an
import (at the top of a module or inside a function: both load the layer) may
only name a layer that its own layer's entry lists. Change the table and the
map in docs/architecture.md together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import keyplane

SOURCE = Path(keyplane.__file__).parent

#: layer -> the layers it may import (itself is always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "keyplane.core": frozenset(),
    "keyplane.storage": frozenset({"keyplane.core"}),
    "keyplane.logs": frozenset({"keyplane.core"}),
    "keyplane.ionq.jobs.limits": frozenset({"keyplane.core"}),
    # How a database URL is printed without its password (config.py shows it too).
    "keyplane.storage.urls": frozenset(),
    "keyplane.config": frozenset(
        {"keyplane.core", "keyplane.ionq.jobs.limits", "keyplane.storage.urls"}
    ),
    "keyplane.ionq.circuits": frozenset({"keyplane.core"}),
    "keyplane.ionq.jobs": frozenset(
        {
            "keyplane.core",
            "keyplane.storage",
            "keyplane.config",
            "keyplane.logs",
            "keyplane.ionq.circuits",
            "keyplane.ionq.jobs.limits",
            "keyplane.service",
        }
    ),
    "keyplane.service": frozenset(
        {"keyplane.core", "keyplane.storage", "keyplane.config", "keyplane.logs"}
        | {"keyplane.ionq.feature"}  # the IonQ feature's one hook into Services
    ),
    "keyplane.ionq.feature": frozenset(
        {
            "keyplane.config",
            "keyplane.core",
            "keyplane.http",
            "keyplane.ionq.jobs",
            "keyplane.ionq.web",
            "keyplane.service",
            "keyplane.storage",
        }
    ),
    "keyplane.http": frozenset({"keyplane.core"}),
    # The one way a face reaches Services (the faces below may use it as part of http).
    "keyplane.http.services": frozenset({"keyplane.core", "keyplane.service"}),
    "keyplane.api": frozenset({"keyplane.core", "keyplane.http", "keyplane.service"}),
    "keyplane.console": frozenset({"keyplane.core", "keyplane.http", "keyplane.service"}),
    "keyplane.ionq.web": frozenset(
        {
            "keyplane",
            "keyplane.console",
            "keyplane.core",
            "keyplane.http",
            "keyplane.ionq.jobs",
            "keyplane.service",
        }
    ),
    "keyplane.app": frozenset(
        {
            "keyplane",
            "keyplane.api",
            "keyplane.config",
            "keyplane.console",
            "keyplane.core",
            "keyplane.http",
            "keyplane.ionq.feature",
            "keyplane.logs",
            "keyplane.service",
        }
    ),
    "keyplane.client": frozenset({"keyplane.core"}),
    "keyplane.integrations": frozenset(
        {
            "keyplane.client",
            "keyplane.config",
            "keyplane.core",
            "keyplane.http",
            "keyplane.service",
        }
    ),
    "keyplane.cli": frozenset(
        {
            "keyplane",
            "keyplane.client",
            "keyplane.config",
            "keyplane.core",
            "keyplane.logs",
            "keyplane.service",
            "keyplane.storage",
        }
    ),
    "keyplane": frozenset({"keyplane.client"}),
}

#: The layers that may import SQLAlchemy: storage, and the services that build
#: their queries against storage's models.
SQLALCHEMY_LAYERS = frozenset({"keyplane.storage", "keyplane.service", "keyplane.ionq.jobs"})
#: The layers that may import SQLAlchemy besides, for one narrow reason each.
SQLALCHEMY_EXCEPTIONS = frozenset({"keyplane.storage.urls"})
#: The faces: they reach storage only through the services, never the handle.
FACES = ("keyplane.api", "keyplane.console", "keyplane.ionq.web", "keyplane.http")


def layer_of(module: str) -> str:
    parts = module.split(".")
    for size in range(len(parts), 0, -1):
        prefix = ".".join(parts[:size])
        if prefix in ALLOWED:
            return prefix
    raise AssertionError(f"{module} belongs to no layer of tests/test_architecture.py")


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, ``from a import b``
    counted as ``a.b`` when ``b`` is a module (a package's ``__init__`` is its own)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                relative = Path(*candidate.split("."))
                is_module = (SOURCE.parent / relative).with_suffix(".py").exists() or (
                    SOURCE.parent / relative / "__init__.py"
                ).exists()
                names.add(candidate if is_module else target)
    return names


def modules() -> list[tuple[Path, str]]:
    return [(path, module_name(path)) for path in sorted(SOURCE.rglob("*.py"))]


def test_every_import_points_to_a_layer_its_layer_may_use() -> None:
    wrong = []
    for path, module in modules():
        own = layer_of(module)
        for name in imported(path, module):
            if name != "keyplane" and not name.startswith("keyplane."):
                continue
            target = layer_of(name)
            if target == "keyplane.http.services" and "keyplane.service" in ALLOWED[own]:
                continue  # a face reaching Services, which it may use anyway
            if target == "keyplane.storage.urls" and "keyplane.storage" in ALLOWED[own]:
                continue  # a part of storage, for those that may use storage
            if target != own and target not in ALLOWED[own] and not name.startswith(own + "."):
                wrong.append(f"{module} ({own}) imports {name} ({target})")
    assert wrong == []


def test_sqlalchemy_stays_in_storage_and_the_services() -> None:
    wrong = []
    for path, module in modules():
        if layer_of(module) in SQLALCHEMY_LAYERS or module in SQLALCHEMY_EXCEPTIONS:
            continue
        if any(name.split(".")[0] == "sqlalchemy" for name in imported(path, module)):
            wrong.append(module)
    assert wrong == []


def test_the_rules_catch_an_import_against_them() -> None:
    """The check itself can fail: core importing the service layer is refused."""
    assert "keyplane.service" not in ALLOWED[layer_of("keyplane.core.grant")]
    assert layer_of("keyplane.ionq.jobs.limits") == "keyplane.ionq.jobs.limits"
    assert layer_of("keyplane.ionq.jobs.queue") == "keyplane.ionq.jobs"
    assert "keyplane.api" not in ALLOWED[layer_of("keyplane.integrations.guard")]


def test_faces_reach_services_one_way() -> None:
    """Only the app assembly and ``http/services.py`` touch where an app keeps its
    services; every route, dependency and handler asks ``http.services``."""
    allowed = {"keyplane.app", "keyplane.http.services"}
    wrong = []
    for path, module in modules():
        if module in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"services", "services_provider", "services_getter"}
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "state"
            ):
                wrong.append(f"{module}:{node.lineno}")
            if (
                isinstance(node, ast.Constant)
                and node.value in {"services", "services_provider"}
                and module.split(".")[1] in {"api", "console", "ionq", "integrations"}
            ):
                wrong.append(f"{module}:{node.lineno} (getattr by name)")
    assert wrong == []


def test_faces_never_hold_the_database_handle() -> None:
    """The API, the console, the IonQ surface and the HTTP edge ask services
    (``services.audit``, ``services.readiness_problem()``...), never ``.database``."""
    wrong = []
    for path, module in modules():
        if not module.startswith(FACES):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in {"database", "engine"}:
                wrong.append(f"{module}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "keyplane.storage"
            ):
                wrong.append(f"{module}:{node.lineno} imports {node.module}")
    assert wrong == []


def test_server_and_sdk_errors_share_no_class_name_but_their_base() -> None:
    """``keyplane.core.errors`` (raised by the server's code) and
    ``keyplane.client.errors`` (the SDK's view of an answer) never use one name
    for two meanings; both derive from the one ``KeyplaneError``."""
    import inspect

    from keyplane.client import errors as sdk
    from keyplane.core import errors as core

    def own_classes(module: object) -> set[str]:
        return {
            name
            for name, value in vars(module).items()
            if inspect.isclass(value) and value.__module__ == module.__name__  # type: ignore[attr-defined]
        }

    assert own_classes(core) & own_classes(sdk) == set()
    assert issubclass(sdk.APIError, core.KeyplaneError)
