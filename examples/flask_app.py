"""A Flask service whose API is protected by Keyplane keys.

    export KEYPLANE_URL=http://127.0.0.1:8000
    export KEYPLANE_API_KEY=kp_...   # this service's own key, with the keys:verify scope
    flask --app examples.flask_app run --port 9001

(``KEYPLANE_VERIFY_MODE=local`` verifies in-process on the server's database.)
GET /reports answers 200 with a key holding reports:read, 401 without a key,
403 with a key that lacks the scope.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g

from keyplane.integrations import KeyVerifier, verifier_from_env
from keyplane.integrations.flask import init_app, require_key


def create_app(verifier: KeyVerifier | None = None) -> Flask:
    app = Flask(__name__)
    init_app(app, verifier if verifier is not None else verifier_from_env())

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/reports")
    @require_key(scopes=["reports:read"])
    def reports() -> dict[str, Any]:
        return {
            "reports": ["2026-q3", "2026-q4"],
            "key_id": g.keyplane.key_id,
            "project_id": g.keyplane.project_id,
        }

    @app.get("/me")
    @require_key()
    def me() -> dict[str, Any]:
        return {"key_id": g.keyplane.key_id, "name": g.keyplane.name}

    return app


if __name__ == "__main__":
    create_app().run(port=9001)
