"""Checks on values callers supply: names, metadata, expiry times."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from keyplane.core.errors import InvalidInput
from keyplane.core.quotas import REFILLS
from keyplane.service.records import Quota, RateLimit
from keyplane.storage.models import USER_AGENT_LENGTH

MAX_METADATA_BYTES: Final = 16_384
MAX_NAME_LENGTH: Final = 200
MAX_USER_AGENT_LENGTH: Final = USER_AGENT_LENGTH
MAX_LIMIT: Final = 2_000_000_000
MAX_RATE_WINDOW_SECONDS: Final = 86_400


def clip_user_agent(user_agent: str | None) -> str | None:
    """A user agent cut to what storage keeps (they can be arbitrarily long)."""
    return user_agent[:MAX_USER_AGENT_LENGTH] if user_agent else None


def check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"a name is 1 to {MAX_NAME_LENGTH} characters", field="name")
    if any(unicodedata.category(char) in {"Cc", "Cf"} for char in name):
        raise InvalidInput("a name cannot contain control characters", field="name")
    return name


def check_filter(value: str, field: str) -> str:
    """A free-text filter: printable, at most 200 characters."""
    if len(value) > 200 or any(unicodedata.category(char) in {"Cc", "Cf"} for char in value):
        raise InvalidInput(f"{field} must be printable text of at most 200 characters", field=field)
    return value


def check_metadata(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(metadata, Mapping):
        raise InvalidInput("metadata is a JSON object", field="metadata")
    try:
        encoded = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidInput("metadata must be plain JSON", field="metadata") from None
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise InvalidInput(
            f"metadata is at most {MAX_METADATA_BYTES} bytes of JSON", field="metadata"
        )
    return metadata


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise InvalidInput(
            "expires_at needs a time zone, e.g. 2030-01-01T00:00:00Z", field="expires_at"
        )
    if expires_at <= now:
        raise InvalidInput("expires_at must be in the future", field="expires_at")


def check_rate_limit(rate_limit: RateLimit | None) -> RateLimit | None:
    if rate_limit is None:
        return None
    if not 1 <= rate_limit.limit <= MAX_LIMIT:
        raise InvalidInput(f"a rate limit is 1 to {MAX_LIMIT} requests", field="rate_limit")
    if not 1 <= rate_limit.window_seconds <= MAX_RATE_WINDOW_SECONDS:
        raise InvalidInput(
            f"a rate limit window is 1 to {MAX_RATE_WINDOW_SECONDS} seconds", field="rate_limit"
        )
    return rate_limit


def check_quota(quota: Quota | None) -> Quota | None:
    if quota is None:
        return None
    if not 1 <= quota.limit <= MAX_LIMIT:
        raise InvalidInput(f"a quota is 1 to {MAX_LIMIT} uses", field="quota")
    if quota.refill is not None and quota.refill not in REFILLS:
        raise InvalidInput("a quota refills daily ('day'), monthly ('month') or never (null)")
    return quota
