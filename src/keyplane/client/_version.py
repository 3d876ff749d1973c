"""The SDK's version, read once from the installed distribution's metadata.

The one place the version is known at run time: ``keyplane.__version__`` (the
root package) and the SDK's ``User-Agent`` both come from here, so client/ never
imports the root package ``keyplane`` (tests/client/test_import_boundary.py).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Final


def _installed_version() -> str:
    try:
        return version("keyplane")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


__version__: Final = _installed_version()
