"""The connection to Redis, the store that instances share counters and change news through."""

from __future__ import annotations

from typing import Any


def redis_client(url: str | None, *, name: str = "keyplane") -> Any:
    """A Redis client for ``url`` with short timeouts (a slow Redis must not stall
    requests); its connections show as ``name`` in ``CLIENT LIST``."""
    import redis

    return redis.Redis.from_url(
        url or "",
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
        client_name=name,
    )
