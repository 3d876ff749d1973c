"""The web console: server-rendered pages over the same services as the REST API.

``create_console`` builds an ASGI app that ``app.py`` mounts at ``/console``.
"""

from __future__ import annotations

from keyplane.console.app import create_console

__all__ = ["create_console"]
