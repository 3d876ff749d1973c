"""The peer: a Django REST framework endpoint protected by djangorestframework-api-key.

One module is the whole Django project (settings, URLs, views), so gunicorn
serves it as ``peer_site:application``. ``python peer_site.py setup N FILE``
migrates the SQLite database and writes N new keys to FILE, one a line.
The two endpoints mirror Keyplane's: ``GET /api/v1/whoami`` answers the
key's name and prefix; ``POST /api/v1/verify`` checks the key in the body
with ``APIKey.objects.is_valid`` as well as the caller's key.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATABASE = os.environ.get("PEER_DATABASE", str(HERE / "peer.sqlite3"))

from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only-not-secret",  # noqa: S106
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework",
        "rest_framework_api_key",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATABASE}},
    MIDDLEWARE=[],
    USE_TZ=True,
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework_api_key.permissions.HasAPIKey"],
        "UNAUTHENTICATED_USER": None,
    },
    LOGGING_CONFIG=None,
)

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402
from rest_framework_api_key.models import APIKey  # noqa: E402
from rest_framework_api_key.permissions import KeyParser  # noqa: E402

_PARSER = KeyParser()


class WhoAmI(APIView):
    def get(self, request):  # type: ignore[no-untyped-def]
        key = _PARSER.get(request)
        prefix = key.partition(".")[0]
        found = APIKey.objects.get(prefix=prefix)
        return Response({"id": found.id, "name": found.name, "prefix": found.prefix})


class Verify(APIView):
    def post(self, request):  # type: ignore[no-untyped-def]
        return Response({"valid": APIKey.objects.is_valid(str(request.data.get("key", "")))})


urlpatterns = [path("api/v1/whoami", WhoAmI.as_view()), path("api/v1/verify", Verify.as_view())]

application = get_wsgi_application()


def setup(count: int, out: Path) -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    keys = [APIKey.objects.create_key(name=f"bench {n}")[1] for n in range(count)]
    out.write_text("\n".join(keys) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["setup"]:
        setup(int(sys.argv[2]), Path(sys.argv[3]))
