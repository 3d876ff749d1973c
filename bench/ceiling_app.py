"""The ceiling: the least an ASGI app can do to check an API key.

``GET /api/v1/whoami`` and ``POST /api/v1/verify`` take the key from
``Authorization: Bearer``, hash it with SHA-256 and look the hash up in a
dict, then answer a small JSON body. No framework, no database, no limits, no
usage tracking: nothing Keyplane could skip. bench/http_load.py serves it
with ``python bench/ceiling_app.py PORT WORKERS``: uvicorn started exactly as
``keyplane serve`` starts it (``run_uvicorn``, same TCP_NODELAY socket). It
accepts the keys listed in the file ``KEYPLANE_BENCH_KEYS`` (one a line).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_KEYS_FILE = os.environ.get("KEYPLANE_BENCH_KEYS", "")
KNOWN: dict[str, bytes] = {}
if _KEYS_FILE:
    for number, line in enumerate(Path(_KEYS_FILE).read_text().split()):
        body = {"id": f"key_{number}", "name": "bench", "scopes": ["keys:verify"]}
        KNOWN[hashlib.sha256(line.encode()).hexdigest()] = json.dumps(body).encode()

_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    body = b""
    if scope["method"] == "POST":
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
    token = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = value.decode("latin-1").partition(" ")[2]
    found = KNOWN.get(hashlib.sha256(token.encode()).hexdigest())
    if found is None:
        status, answer = 401, b'{"detail":"invalid key"}'
    elif scope["path"] == "/api/v1/verify":
        key = json.loads(body or b"{}").get("key", "")
        valid = hashlib.sha256(str(key).encode()).hexdigest() in KNOWN
        status, answer = 200, b'{"valid":true}' if valid else b'{"valid":false}'
    else:
        status, answer = 200, found
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(answer)).encode()), *_JSON],
        }
    )
    await send({"type": "http.response.body", "body": answer})


if __name__ == "__main__":
    import sys

    from keyplane.cli.connections import ConnectionLimits
    from keyplane.cli.server import run_uvicorn
    from keyplane.config import Settings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    run_uvicorn(
        "ceiling_app:app",
        limits=ConnectionLimits.of(Settings.from_env()),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=int(sys.argv[2]),
        access_log=False,
        log_level="warning",
        server_header=False,
    )
