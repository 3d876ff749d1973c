"""Server-side commands: ``serve`` and ``db``."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import typer
import uvicorn
from uvicorn.supervisors import Multiprocess

from keyplane.cli.connections import ConnectionLimits, GuardedH11Protocol
from keyplane.cli.output import errors_as_messages, stderr, stdout
from keyplane.config import Settings, listen_backlog
from keyplane.logs import configure_logging
from keyplane.service.keys.leaks import GitHubKeyring
from keyplane.storage import migrate
from keyplane.storage.database import Database
from keyplane.storage.urls import hide_password

#: What every worker runs: the one assembly (``app.py``), which the tests' ``app`` fixture
#: builds too. Named as a string, so each worker process imports the app itself.
APP_FACTORY = "keyplane.app:create_app"
#: Uvicorn's ``loop``: its usual event loop, with repeated errors logged once per interval.
LOOP_FACTORY = "keyplane.cli.connections:new_event_loop"
#: Bytes of request line and headers h11 may buffer beyond KEYPLANE_MAX_HEADER_BYTES
#: (the request line, which that limit does not count): past them, h11 refuses with 400.
REQUEST_LINE_ALLOWANCE = 8192

db_app = typer.Typer(help="Database schema: upgrade, current.", no_args_is_help=True)


def serve(
    host: str | None = typer.Option(
        None, help="Address to bind (env KEYPLANE_HOST, default 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, help="Port (env KEYPLANE_PORT, default 8000; 0 picks a free one)."
    ),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes."),
) -> None:
    """Run the Keyplane server (SQLite with no configuration)."""
    with errors_as_messages():
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.key_format)
        database = Database(settings.database_url)
        try:
            # Migrate (SQLite) or check (PostgreSQL) once, before any worker starts.
            migrate.prepare(database.engine)
        finally:
            database.dispose()
        if settings.github_keys_file is not None:
            GitHubKeyring.from_file(settings.github_keys_file)  # a bad file stops us here
    host = host or settings.host
    port = settings.port if port is None else port
    where = hide_password(settings.database_url)
    shown = f"http://{host}:{port}" if port else f"{host}, on a free port (see below)"
    stderr.print(f"Keyplane serving on {shown}  (database: {where})", markup=False)
    # Workers are new processes: hand them the same settings through the environment.
    os.environ.setdefault("KEYPLANE_DATA_DIR", str(settings.data_dir))
    # ...and where they listen: the console's own URL (links in mail, the passkey
    # origin) is derived from it when KEYPLANE_PUBLIC_URL is unset.
    os.environ["KEYPLANE_HOST"] = host
    if port:
        os.environ["KEYPLANE_PORT"] = str(port)
    started = run_uvicorn(
        APP_FACTORY,
        limits=ConnectionLimits.of(settings),
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **server_options(settings),
        # A worker imports the whole stack and checks the schema before it
        # answers; on a busy 2-core machine that can pass uvicorn's 5 s default.
        timeout_worker_healthcheck=30,
    )
    if not started:
        raise typer.Exit(3)


def server_options(settings: Settings) -> dict[str, Any]:
    """The Uvicorn options ``serve`` takes from the settings (and the fixed ones); the
    test suite's in-thread servers (tests/live.py) run with them too."""
    return {
        "access_log": False,  # uvicorn's would print query strings; ours never does
        "proxy_headers": False,  # client IPs come from KEYPLANE_TRUSTED_PROXIES only
        "server_header": False,
        "log_config": None,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "backlog": listen_backlog(settings.max_connections),
        # h11's bound on a request head that arrives in pieces (16 KiB by default,
        # whatever KEYPLANE_MAX_HEADER_BYTES says): past it, h11 refuses with 400.
        "h11_max_incomplete_event_size": settings.max_header_bytes + REQUEST_LINE_ALLOWANCE,
        "timeout_graceful_shutdown": 10,
    }


def run_uvicorn(app: str, *, limits: ConnectionLimits, workers: int = 1, **options: Any) -> bool:
    """What ``uvicorn.run`` does, with :class:`ServingConfig` (the connection guard of
    ``cli/connections.py`` holding ``limits``); False if a single server failed to
    start. (bench/ceiling_app.py runs the same way, for a fair ceiling.)"""
    config = ServingConfig(app, limits=limits, workers=workers, **options)
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:  # pragma: no cover - Ctrl+C in a terminal
        pass
    return config.workers > 1 or server.started


class NoDelayConfig(uvicorn.Config):
    """uvicorn's Config, with a listening socket whose accepted connections get TCP_NODELAY.

    With several workers uvicorn binds the socket itself as ``socket(AF_INET)``,
    protocol 0. asyncio disables Nagle's algorithm only on sockets whose protocol
    is IPPROTO_TCP, so every keep-alive answer written in two parts (headers,
    then body) waited for the client's delayed ACK: about 40 ms per request
    (bench/http_load.py found it). Re-wrapping the same descriptor with the
    protocol set fixes that for every worker.
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return sock  # pragma: no cover - Keyplane binds TCP only
        return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


class ServingConfig(NoDelayConfig):
    """The config ``keyplane serve`` runs: the guarded h11 protocol and its limits, and
    the event loop that logs repeated errors once per interval (``cli/connections.py``).

    Workers are other processes that receive this config pickled: the limits
    travel with it.
    """

    def __init__(
        self, app: str | Callable[..., Any], *, limits: ConnectionLimits, **options: Any
    ) -> None:
        super().__init__(app, http=GuardedH11Protocol, loop=LOOP_FACTORY, **options)
        self.connection_limits = limits


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to this version of Keyplane."""
    with errors_as_messages():
        settings = Settings.from_env()
        database = Database(settings.database_url)
        try:
            before = migrate.current_revision(database.engine)
            migrate.upgrade(database.engine)
            after = migrate.current_revision(database.engine)
        finally:
            database.dispose()
    if before == after:
        stdout.print(f"Database already at {after}.")
    else:
        stdout.print(f"Database upgraded from {before or 'empty'} to {after}.")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this Keyplane needs."""
    with errors_as_messages():
        settings = Settings.from_env()
        database = Database(settings.database_url)
        try:
            current = migrate.current_revision(database.engine)
        finally:
            database.dispose()
    head = migrate.head_revision()
    if current == head:
        state = "up to date"
    elif migrate.is_known(current):
        state = "behind: run `keyplane db upgrade`"
    else:
        state = "ahead: a newer Keyplane migrated this database"
    stdout.print(f"current: {current or 'empty'}  needed: {head}  ({state})")
