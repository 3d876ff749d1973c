"""Checks on values callers supply: names, metadata and other stored JSON, expiry times.

Stored JSON (key metadata, a job's input, metadata, noise and settings) is
checked here, whatever face it came through (API, IonQ surface, SDK in
process, console, CLI), so nothing is stored that cannot be rendered back:
nested at most ``KEYPLANE_MAX_JSON_DEPTH`` deep (pydantic-core will not
serialize past 255, and Python's ``json`` recurses per level), strings that
are UTF-8 text without NUL (PostgreSQL's ``jsonb`` refuses ``\u0000``), finite
numbers, string keys.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from keyplane.config import DEFAULT_MAX_JSON_DEPTH, MAX_JSON_DEPTH_CEILING
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
    # Cs: a lone surrogate, which no database can store as text.
    if any(unicodedata.category(char) in {"Cc", "Cf", "Cs"} for char in name):
        raise InvalidInput("a name cannot contain control characters", field="name")
    return name


def check_filter(value: str, field: str) -> str:
    """A free-text filter: printable, at most 200 characters."""
    if len(value) > 200 or any(unicodedata.category(char) in {"Cc", "Cf", "Cs"} for char in value):
        raise InvalidInput(f"{field} must be printable text of at most 200 characters", field=field)
    return value


def is_text(value: str) -> bool:
    """UTF-8 encodable (no lone surrogate) and free of NUL: storable everywhere."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_json(value: Any, field: str, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:
    """Plain JSON that can be stored and rendered: objects with string keys, arrays,
    text, finite numbers, booleans and null, nested at most ``max_depth`` deep
    (``{}`` is 1 deep). Walked with a stack, not recursion: the value may come
    from a caller in process (SDK, CLI) and be nested arbitrarily deep."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > max_depth:
                raise InvalidInput(
                    f"{field} nests arrays and objects at most {max_depth} deep", field=field
                )
            if isinstance(item, Mapping):
                for key, member in item.items():
                    if not isinstance(key, str) or not is_text(key):
                        raise InvalidInput(f"{field} keys must be text", field=field)
                    pending.append((member, depth + 1))
            else:
                pending.extend((member, depth + 1) for member in item)
        elif isinstance(item, str):
            if not is_text(item):
                raise InvalidInput(
                    f"{field} strings must be text (no NUL, no lone surrogate)", field=field
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(f"{field} numbers must be finite", field=field)
        elif item is not None and not isinstance(item, int):  # bool is an int
            raise InvalidInput(f"{field} must be plain JSON", field=field)


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest deeper than ``limit`` (no recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            members: Any = item.values()
        elif isinstance(item, list | tuple):
            members = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend(
            (member, depth + 1) for member in members if isinstance(member, Mapping | list | tuple)
        )
    return False


def renderable(value: Any, field: str) -> Any:
    """Stored JSON as answers show it: itself, unless it is nested too deep to serialize.

    Nothing deeper than ``KEYPLANE_MAX_JSON_DEPTH`` is stored any more, but a
    database from before that limit may hold such values (a listing including
    one would fail). Up to the setting's ceiling they are shown as they are;
    deeper, as a note saying so (the value stays stored; replacing it fixes it).
    """
    if value is None or not nested_deeper_than(value, MAX_JSON_DEPTH_CEILING):
        return value
    return {
        "keyplane_unrenderable": (
            f"this {field} nests deeper than {MAX_JSON_DEPTH_CEILING} levels and cannot be "
            "shown; replace it"
        )
    }


def check_metadata(
    metadata: Mapping[str, Any], *, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> Mapping[str, Any]:
    if not isinstance(metadata, Mapping):
        raise InvalidInput("metadata is a JSON object", field="metadata")
    check_json(metadata, "metadata", max_depth=max_depth)
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
