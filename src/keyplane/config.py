"""Settings from the environment, validated once at start.

Every setting is optional. A wrong one fails at start with a
:class:`ConfigError` whose message names the variable and the fix.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

import platformdirs
from limits import parse_many

from keyplane.core.durations import parse_duration
from keyplane.core.errors import InvalidInput, KeyplaneError
from keyplane.core.keys import DEFAULT_PREFIX, KeyFormat
from keyplane.core.network import IPNetwork, parse_allowlist
from keyplane.ionq.jobs.limits import JobLimits
from keyplane.storage.urls import hide_password

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8000
SQLITE_FILENAME: Final = "keyplane.db"
SIGNUP_POLICIES: Final = ("first", "open", "off")
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
DEFAULT_MAX_HEADER_BYTES: Final = 16 * 1024
DEFAULT_MAX_JSON_DEPTH: Final = 32
#: pydantic-core will not serialize a value nested deeper than 255, and answers
#: wrap stored JSON a few levels deep (a page of keys, a key, its metadata):
#: the setting stays well below, so everything accepted can be rendered.
MAX_JSON_DEPTH_CEILING: Final = 128
FAILED_KEY_LIMIT: Final = "20 per minute"
LOGIN_ACCOUNT_LIMIT: Final = "5 per 5 minutes"
LOGIN_IP_LIMIT: Final = "20 per 5 minutes"
DEFAULT_HEADER_TIMEOUT: Final = 10.0
DEFAULT_BODY_TIMEOUT: Final = 30.0
DEFAULT_SEND_TIMEOUT: Final = 30.0
DEFAULT_KEEP_ALIVE_TIMEOUT: Final = 5
#: Open files a worker keeps for itself beyond its connections (database, logs,
#: the event loop, Redis, imports, and the connections asyncio accepts in one go
#: before the bound sees them): at least this many, or a quarter of the limit.
FILE_RESERVE: Final = 128
#: The least KEYPLANE_MAX_CONNECTIONS leaves of the open-file limit.
FILE_MARGIN: Final = 16
#: Of the reserve, the files a worker keeps open besides connections: its
#: database pool (two or three files per connection), logs, the event loop, Redis.
OTHER_FILES: Final = 64
#: Loop turns a connection over the bound holds its file: asyncio accepts it in one
#: turn, makes its transport in the next, the bound refuses and closes it in the
#: third and the file is released in the fourth, while each turn may accept up to
#: the backlog again. So up to three backlogs of them are open at once.
ACCEPT_TURNS: Final = 3
#: The open-file limit assumed when the process has none (RLIM_INFINITY).
UNLIMITED_FILES: Final = 65_536
DEFAULT_SMTP_FROM: Final = "Keyplane <keyplane@localhost>"
SMTP_SCHEMES: Final = ("smtp", "smtp+starttls", "smtps")
_ANY_ADDRESS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared, not bound
#: IonQ's console signs out after 30 idle minutes.
DEFAULT_SESSION_IDLE_TIMEOUT: Final = timedelta(minutes=30)
DEFAULT_SESSION_LIFETIME: Final = timedelta(days=7)
DEFAULT_SUDO_TIMEOUT: Final = timedelta(minutes=15)
DEFAULT_WEBHOOK_WORKERS: Final = 4
DEFAULT_WEBHOOK_DISABLE_AFTER_FAILURES: Final = 15
DEFAULT_WEBHOOK_DISABLE_AFTER: Final = timedelta(hours=24)


N = TypeVar("N", int, float)


class ConfigError(KeyplaneError):
    """A setting is wrong; the message names the variable and how to fix it."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    #: May hold a password: kept out of the repr (see ``__repr__``).
    database_url: str = field(repr=False)
    redis_url: str | None = field(default=None, repr=False)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    key_prefix: str = DEFAULT_PREFIX
    #: Seconds a verified key stays in a process's cache. Other processes'
    #: changes reach the cache through the change feed within 1 s whatever the
    #: TTL (service/invalidation.py), so it can be long; it bounds how stale a
    #: quota count loaded with the key can get, and how long an unused key stays.
    key_cache_ttl: float = 60.0
    #: Most keys cached per process (least recently used go first); about 1.3 KB each.
    key_cache_size: int = 10_000
    #: Seconds between two polls of the key change feed (the safety net under
    #: LISTEN/NOTIFY or Redis pub/sub, and the only channel on SQLite).
    change_poll_interval: float = 0.5
    #: Seconds between flushes of the last-used buffer.
    usage_flush_interval: float = 1.0
    #: Seconds between scans for expiring and stale keys (0: this process never scans).
    scheduler_interval: float = 60.0
    trusted_proxies: tuple[IPNetwork, ...] = field(default_factory=tuple)
    log_level: str = "info"
    #: Who may create an organization from the console's sign-up page:
    #: ``first`` (only the first user of a fresh server), ``open`` or ``off``.
    signup: str = "first"
    #: Threads per process that run jobs of the IonQ-compatible API (0: run none here).
    ionq_workers: int = 2
    #: The widest circuit the built-in simulator accepts (2^n amplitudes of 16 bytes).
    ionq_max_qubits: int = 20
    #: Largest request body and header block accepted (bytes); larger gets 413 / 431.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    #: Deepest nesting of arrays and objects in a JSON body, and in stored JSON
    #: (key metadata, job input); deeper gets 400 / 422.
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: Seconds a connection has to send a whole request line and headers (from
    #: its opening, or from the previous answer); then it is closed.
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    #: Seconds a request has to send its whole body once its headers are in; then 408.
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    #: Seconds a client may leave an answer unread (the kernel accepts none of
    #: the bytes waiting to go out to it); then the connection is aborted.
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    #: Seconds an idle keep-alive connection stays open (Uvicorn's timeout_keep_alive).
    keep_alive_timeout: int = DEFAULT_KEEP_ALIVE_TIMEOUT
    #: Open connections per worker process; more are answered 503 and closed at
    #: once. Default: below the process's open-file limit (:func:`default_max_connections`).
    max_connections: int = field(default_factory=lambda: default_max_connections())
    #: Open connections per worker from one client address (0: no per-address
    #: cap); trusted proxies are exempt. Default: a quarter of ``max_connections``.
    max_connections_per_ip: int | None = None
    #: Failed key attempts one client IP may make (a ``limits`` string); then 429.
    failed_key_limit: str = FAILED_KEY_LIMIT
    #: Failed console sign-ins per account and per client IP.
    login_account_limit: str = LOGIN_ACCOUNT_LIMIT
    login_ip_limit: str = LOGIN_IP_LIMIT
    #: A JSON file with GitHub's secret scanning public keys (the document
    #: ``GET https://api.github.com/meta/public_keys/secret_scanning`` returns);
    #: unset, ``POST /api/v1/leaks/github`` refuses every report.
    github_keys_file: Path | None = None
    jobs: JobLimits = field(default_factory=JobLimits)
    #: Keys that seal secrets kept in the database (TOTP secrets, SSO client
    #: secrets, mail waiting to be sent), newest first: the first seals, every
    #: one opens (rotation). Empty: a key file in ``data_dir`` made on first use.
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    #: ``smtp://``, ``smtp+starttls://`` or ``smtps://`` (implicit TLS), with
    #: ``user:password@`` when the server wants them; None: mail is not sent and
    #: the console shows links to the person who asked (``keyplane admin`` prints them).
    smtp_url: str | None = field(default=None, repr=False)
    smtp_from: str = DEFAULT_SMTP_FROM
    #: The URL people reach the console at, for links in mail (never taken from a
    #: request's Host header, which a caller chooses). Default: ``http://host:port``.
    public_url: str | None = None
    #: A console session ends after this long without a request, and this long
    #: after sign-in however active.
    session_idle_timeout: timedelta = DEFAULT_SESSION_IDLE_TIMEOUT
    session_lifetime: timedelta = DEFAULT_SESSION_LIFETIME
    #: Sensitive changes (keys with management scopes, roles, MFA and SSO
    #: settings) need a sign-in or re-authentication at most this long ago.
    sudo_timeout: timedelta = DEFAULT_SUDO_TIMEOUT
    #: Networks outbound calls (webhook deliveries) may reach although they are
    #: loopback, private, link-local or otherwise internal (service/events/outbound.py).
    #: Empty: only public addresses.
    outbound_allow_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)
    #: Threads per process that send webhook deliveries (0: send none here).
    webhook_workers: int = DEFAULT_WEBHOOK_WORKERS
    #: An endpoint is disabled once this many attempts in a row failed **and** the
    #: first of them is older than ``webhook_disable_after``.
    webhook_disable_after_failures: int = DEFAULT_WEBHOOK_DISABLE_AFTER_FAILURES
    webhook_disable_after: timedelta = DEFAULT_WEBHOOK_DISABLE_AFTER

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}"
            for name, value in (
                ("data_dir", self.data_dir),
                ("database_url", hide_password(self.database_url)),
                ("redis_url", hide_password(self.redis_url) if self.redis_url else None),
                ("host", self.host),
                ("port", self.port),
                ("key_prefix", self.key_prefix),
            )
        )
        return f"Settings({fields}, ...)"

    @property
    def connections_per_ip(self) -> int:
        """``max_connections_per_ip``, its default resolved (0: no cap)."""
        if self.max_connections_per_ip is not None:
            return self.max_connections_per_ip
        return max(1, self.max_connections // 4)

    @cached_property
    def key_format(self) -> KeyFormat:
        return KeyFormat(self.key_prefix)

    @property
    def console_url(self) -> str:
        """The console's base URL for links in mail (no trailing slash)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if self.host not in _ANY_ADDRESS else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(
            _get(env, "KEYPLANE_DATA_DIR")
            or platformdirs.user_data_dir("keyplane", appauthor=False)
        ).expanduser()
        database_url = normalize_database_url(
            _get(env, "KEYPLANE_DATABASE_URL") or f"sqlite:///{data_dir / SQLITE_FILENAME}"
        )
        redis_url = _get(env, "KEYPLANE_REDIS_URL")
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "KEYPLANE_REDIS_URL must start with redis://, rediss:// or unix://, "
                "e.g. redis://127.0.0.1:6379/0"
            )
        key_prefix = _get(env, "KEYPLANE_KEY_PREFIX") or DEFAULT_PREFIX
        try:
            KeyFormat(key_prefix)
        except InvalidInput:
            raise ConfigError(
                "KEYPLANE_KEY_PREFIX must be 1 to 16 lowercase letters or digits starting "
                "with a letter, e.g. kp"
            ) from None
        try:
            proxies = parse_allowlist(
                item
                for item in (_get(env, "KEYPLANE_TRUSTED_PROXIES") or "").split(",")
                if item.strip()
            )
        except InvalidInput as error:
            raise ConfigError(
                f"KEYPLANE_TRUSTED_PROXIES: {error}; give a comma-separated list of CIDRs"
            ) from None
        try:
            outbound_allow = parse_allowlist(
                item
                for item in (_get(env, "KEYPLANE_OUTBOUND_ALLOW_NETWORKS") or "").split(",")
                if item.strip()
            )
        except InvalidInput as error:
            raise ConfigError(
                f"KEYPLANE_OUTBOUND_ALLOW_NETWORKS: {error}; give a comma-separated list of "
                "CIDRs, e.g. 127.0.0.1/32,10.0.0.0/8"
            ) from None
        log_level = (_get(env, "KEYPLANE_LOG_LEVEL") or "info").lower()
        if log_level not in {"critical", "error", "warning", "info", "debug"}:
            raise ConfigError(
                "KEYPLANE_LOG_LEVEL must be one of critical, error, warning, info, debug"
            )
        signup = (_get(env, "KEYPLANE_SIGNUP") or "first").lower()
        if signup not in SIGNUP_POLICIES:
            raise ConfigError(
                "KEYPLANE_SIGNUP must be first (only the first user of a fresh server signs up), "
                "open (anyone may create an organization) or off (invitations only)"
            )
        github_keys = _get(env, "KEYPLANE_GITHUB_KEYS_FILE")
        max_connections = _max_connections(env)
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            host=_get(env, "KEYPLANE_HOST") or DEFAULT_HOST,
            port=_number(env, "KEYPLANE_PORT", DEFAULT_PORT, int, 0, 65535),
            key_prefix=key_prefix,
            key_cache_ttl=_number(env, "KEYPLANE_KEY_CACHE_TTL", 60.0, float, 0.0, 3600.0),
            key_cache_size=_number(env, "KEYPLANE_KEY_CACHE_SIZE", 10_000, int, 0, 10_000_000),
            change_poll_interval=_number(
                env, "KEYPLANE_CHANGE_POLL_INTERVAL", 0.5, float, 0.05, 0.5
            ),
            usage_flush_interval=_number(
                env, "KEYPLANE_USAGE_FLUSH_INTERVAL", 1.0, float, 0.05, 1.0
            ),
            scheduler_interval=_number(
                env, "KEYPLANE_SCHEDULER_INTERVAL", 60.0, float, 0.0, 86400.0
            ),
            trusted_proxies=proxies,
            log_level=log_level,
            signup=signup,
            ionq_workers=_number(env, "KEYPLANE_IONQ_WORKERS", 2, int, 0, 64),
            ionq_max_qubits=_number(env, "KEYPLANE_IONQ_MAX_QUBITS", 20, int, 1, 26),
            max_body_bytes=_number(
                env, "KEYPLANE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, int, 1024, 1024**3
            ),
            max_header_bytes=_number(
                env, "KEYPLANE_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES, int, 1024, 1024**2
            ),
            max_json_depth=_number(
                env,
                "KEYPLANE_MAX_JSON_DEPTH",
                DEFAULT_MAX_JSON_DEPTH,
                int,
                2,
                MAX_JSON_DEPTH_CEILING,
            ),
            header_timeout=_number(
                env, "KEYPLANE_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT, float, 0.5, 300.0
            ),
            body_timeout=_number(
                env, "KEYPLANE_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT, float, 0.5, 3600.0
            ),
            send_timeout=_number(
                env, "KEYPLANE_SEND_TIMEOUT", DEFAULT_SEND_TIMEOUT, float, 0.5, 3600.0
            ),
            keep_alive_timeout=_number(
                env, "KEYPLANE_KEEP_ALIVE_TIMEOUT", DEFAULT_KEEP_ALIVE_TIMEOUT, int, 1, 300
            ),
            max_connections=max_connections,
            max_connections_per_ip=_optional_number(
                env, "KEYPLANE_MAX_CONNECTIONS_PER_IP", int, 0, max_connections
            ),
            failed_key_limit=_rate(env, "KEYPLANE_FAILED_KEY_LIMIT", FAILED_KEY_LIMIT),
            login_account_limit=_rate(env, "KEYPLANE_LOGIN_ACCOUNT_LIMIT", LOGIN_ACCOUNT_LIMIT),
            login_ip_limit=_rate(env, "KEYPLANE_LOGIN_IP_LIMIT", LOGIN_IP_LIMIT),
            github_keys_file=Path(github_keys).expanduser() if github_keys else None,
            jobs=_job_limits(env),
            secret_keys=tuple(
                part.strip()
                for part in (_get(env, "KEYPLANE_SECRET_KEY") or "").split(",")
                if part.strip()
            ),
            smtp_url=_smtp_url(env),
            smtp_from=_get(env, "KEYPLANE_SMTP_FROM") or DEFAULT_SMTP_FROM,
            public_url=_public_url(env),
            session_idle_timeout=_duration(
                env,
                "KEYPLANE_SESSION_IDLE_TIMEOUT",
                DEFAULT_SESSION_IDLE_TIMEOUT,
                timedelta(minutes=1),
                timedelta(days=30),
            ),
            session_lifetime=_duration(
                env,
                "KEYPLANE_SESSION_LIFETIME",
                DEFAULT_SESSION_LIFETIME,
                timedelta(minutes=5),
                timedelta(days=90),
            ),
            sudo_timeout=_duration(
                env,
                "KEYPLANE_SUDO_TIMEOUT",
                DEFAULT_SUDO_TIMEOUT,
                timedelta(minutes=1),
                timedelta(days=1),
            ),
            outbound_allow_networks=outbound_allow,
            webhook_workers=_number(
                env, "KEYPLANE_WEBHOOK_WORKERS", DEFAULT_WEBHOOK_WORKERS, int, 0, 64
            ),
            webhook_disable_after_failures=_number(
                env,
                "KEYPLANE_WEBHOOK_DISABLE_AFTER_FAILURES",
                DEFAULT_WEBHOOK_DISABLE_AFTER_FAILURES,
                int,
                1,
                10_000,
            ),
            webhook_disable_after=_duration(
                env,
                "KEYPLANE_WEBHOOK_DISABLE_AFTER",
                DEFAULT_WEBHOOK_DISABLE_AFTER,
                timedelta(minutes=1),
                timedelta(days=30),
            ),
        )


def _smtp_url(env: Mapping[str, str]) -> str | None:
    raw = _get(env, "KEYPLANE_SMTP_URL")
    if raw is None:
        return None
    parts = urlsplit(raw)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname or not port_ok:
        raise ConfigError(
            "KEYPLANE_SMTP_URL must be smtp://host:port, smtp+starttls://host:587 or "
            "smtps://host:465, with user:password@ before the host if the server wants them"
        )
    return raw


def _public_url(env: Mapping[str, str]) -> str | None:
    raw = _get(env, "KEYPLANE_PUBLIC_URL")
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            "KEYPLANE_PUBLIC_URL must be the http(s) URL people open the console at, "
            "e.g. https://keys.example.com"
        )
    return raw.rstrip("/")


def _duration(
    env: Mapping[str, str], name: str, default: timedelta, low: timedelta, high: timedelta
) -> timedelta:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = parse_duration(raw)
    except InvalidInput:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(
            f"{name} must be a duration from {_words(low)} to {_words(high)} "
            f"(e.g. 30m, 12h, 7d), got {raw!r}"
        )
    return value


def _words(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def open_file_limit() -> int:
    """This process's soft RLIMIT_NOFILE (:data:`UNLIMITED_FILES` when unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_FILES if soft == resource.RLIM_INFINITY else soft


def default_max_connections() -> int:
    """Connections a worker may hold and still have files left for everything else."""
    files = open_file_limit()
    return max(1, files - max(FILE_RESERVE, files // 4))


def listen_backlog(max_connections: int) -> int:
    """The listening socket's backlog: asyncio also accepts up to this many connections
    in one loop turn, before the bound on connections sees any of them, and holds them
    for :data:`ACCEPT_TURNS` turns; so it is the files left beyond ``max_connections``
    and :data:`OTHER_FILES`, shared by those turns (16 to Uvicorn's default, 2048)."""
    spare = open_file_limit() - max_connections - OTHER_FILES
    return max(16, min(2048, spare // ACCEPT_TURNS))


def _max_connections(env: Mapping[str, str]) -> int:
    """``KEYPLANE_MAX_CONNECTIONS``: above the open-file limit, accepting a connection
    would fail with EMFILE before the bound could refuse it."""
    files = open_file_limit()
    ceiling = max(1, files - FILE_MARGIN)
    raw = _get(env, "KEYPLANE_MAX_CONNECTIONS")
    if raw is None:
        return default_max_connections()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= ceiling:
        raise ConfigError(
            f"KEYPLANE_MAX_CONNECTIONS must be a number from 1 to {ceiling} (this process may "
            f"open {files} files: raise `ulimit -n` for more), got {raw!r}"
        )
    return value


def normalize_database_url(url: str) -> str:
    """Accept the URLs people paste (``postgres://``) and pick the psycopg 3 driver."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    if url in ("sqlite://", "sqlite:///:memory:") or url.startswith("sqlite:///:memory:"):
        raise ConfigError(
            "KEYPLANE_DATABASE_URL points at an in-memory SQLite database, which would lose "
            "every key at exit (and differ per connection): give a file, e.g. "
            "sqlite:////var/lib/keyplane/keyplane.db, or unset it to use the data directory"
        )
    if url.startswith(("sqlite:///", "postgresql+psycopg://")):
        return url
    raise ConfigError(
        "KEYPLANE_DATABASE_URL must be a SQLite or PostgreSQL URL, e.g. "
        "sqlite:////var/lib/keyplane/keyplane.db or postgresql://user@host:5432/keyplane"
    )


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    """A ``limits`` rate such as ``20 per minute`` or ``5/5 minutes``."""
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate such as '20 per minute' or '5 per 5 minutes', got {raw!r}"
        ) from None
    return raw


def _job_limits(env: Mapping[str, str]) -> JobLimits:
    default = JobLimits()
    return JobLimits(
        max_open_per_key=_number(
            env, "KEYPLANE_JOB_MAX_OPEN_PER_KEY", default.max_open_per_key, int, 1, 100_000
        ),
        max_open_per_project=_number(
            env, "KEYPLANE_JOB_MAX_OPEN_PER_PROJECT", default.max_open_per_project, int, 1, 100_000
        ),
        max_running_per_project=_number(
            env, "KEYPLANE_JOB_MAX_RUNNING_PER_PROJECT", default.max_running_per_project, int, 1, 64
        ),
        max_gates=_number(env, "KEYPLANE_JOB_MAX_GATES", default.max_gates, int, 1, 100_000),
        max_shots=_number(env, "KEYPLANE_JOB_MAX_SHOTS", default.max_shots, int, 1, 10**9),
        max_work=_number(env, "KEYPLANE_JOB_MAX_WORK", default.max_work, int, 1, 1 << 40),
        max_result_outcomes=_number(
            env,
            "KEYPLANE_JOB_MAX_RESULT_OUTCOMES",
            default.max_result_outcomes,
            int,
            1,
            1 << 22,
        ),
    )


def _optional_number(env: Mapping[str, str], name: str, kind: type[N], low: N, high: N) -> N | None:
    return None if _get(env, name) is None else _number(env, name, low, kind, low, high)


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N], low: N, high: N) -> N:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(f"{name} must be a number from {low} to {high}, got {raw!r}")
    return value
