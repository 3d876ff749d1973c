"""Where each face of Keyplane is served: the one definition of its URL prefixes.

The server mounts its faces here and the SDK builds its URLs from the same
names, so a prefix changes in one line.
"""

from __future__ import annotations

from typing import Final

#: The REST management API and verification.
API_PREFIX: Final = "/api/v1"
#: The web console.
CONSOLE_PREFIX: Final = "/console"
#: The IonQ-compatible API (IonQ's clients default to ``https://api.ionq.co/v0.4``).
IONQ_PREFIX: Final = "/v0.4"

#: The two key-protected hot routes (served as plain ASGI, ``api/hotpath.py``).
WHOAMI_PATH: Final = f"{API_PREFIX}/whoami"
VERIFY_PATH: Final = f"{API_PREFIX}/verify"
