from __future__ import annotations

import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from keyplane.config import ConfigError, Settings
from keyplane.core.errors import StateConflict
from keyplane.service.services import Services
from keyplane.storage.database import Database, DatabaseUnavailable, after_commit
from keyplane.storage.errors import StorageUnavailable
from keyplane.storage.models import AuditEvent, Organization, Project


def test_sqlite_runs_in_wal_mode_with_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'k.db'}")
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
    database.dispose()


def test_sqlite_file_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "data" / "k.db"
    Database(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_unwritable_sqlite_location_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatabaseUnavailable, match="KEYPLANE_DATA_DIR"):
        Database(f"sqlite:///{blocker / 'sub' / 'k.db'}")


def test_datetimes_come_back_aware_in_utc(services: Services) -> None:
    moment = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    with services.database.write() as session:
        session.add(Organization(id="org_tz", name="TZ", created_at=moment))
    with services.database.read() as session:
        stored = session.scalars(
            select(Organization.created_at).where(Organization.id == "org_tz")
        ).one()
    assert stored == moment
    assert stored.tzinfo == UTC


def test_naive_datetimes_are_refused(services: Services) -> None:
    with pytest.raises(Exception, match="naive"), services.database.write() as session:
        session.add(Organization(id="org_naive", name="N", created_at=datetime(2030, 1, 1)))


def test_a_failed_transaction_leaves_nothing_behind(services: Services) -> None:
    def add_then_fail() -> None:
        with services.database.write() as session:
            session.add(Organization(id="org_gone", name="Gone", created_at=datetime.now(UTC)))
            session.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        add_then_fail()
    with services.database.read() as session:
        assert (
            session.scalars(select(Organization).where(Organization.id == "org_gone")).first()
            is None
        )


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(
            lambda now: Organization(id="org_one", name="Acme again", created_at=now), id="unique"
        ),
        pytest.param(
            lambda now: Project(
                id="prj_orphan",
                organization_id="org_missing",
                name="P",
                created_at=now,
                created_by="operator",
            ),
            id="foreign-key",
        ),
    ],
)
def test_a_constraint_violation_is_a_write_conflict_and_commits_nothing(
    services: Services, second: Callable[[datetime], object]
) -> None:
    """Whichever service hits it, a race lost at a constraint is a Conflict (409), not a 500."""
    now = datetime.now(UTC)
    with services.database.write() as session:
        session.add(Organization(id="org_one", name="Acme", created_at=now))

    def add_both() -> None:
        with services.database.write() as session:
            session.add(Organization(id="org_three", name="Other", created_at=now))
            session.flush()
            session.add(second(now))

    with pytest.raises(StateConflict) as raised:
        add_both()
    assert "INSERT" not in str(raised.value)
    assert raised.value.__cause__ is None  # no SQL or driver text rides along
    with services.database.read() as session:
        ids = set(session.scalars(select(Organization.id)))
    assert ids == {"org_one"}


def test_concurrent_writers_from_separate_engines_all_commit(tmp_path: Path) -> None:
    """Two processes on one SQLite file (the server and the admin CLI) wait, never fail."""
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'k.db'}")
    first = Services.open(settings)
    result = first.bootstrap(organization_name="Acme", project_name="P", owner_email="a@acme.test")
    engines = [Services.open(settings) for _ in range(3)]
    errors: list[BaseException] = []

    def work(services: Services, worker: int) -> None:
        try:
            caller = services.accounts.operator_caller("Acme")
            for index in range(10):
                services.keys.create(caller, result.accounts.project.id, name=f"w{worker}-{index}")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=work, args=(services, n)) for n, services in enumerate(engines)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with first.database.read() as session:
        created = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "key.created")
        ).all()
    assert len(created) == 1 + 30
    for services in [first, *engines]:
        services.close()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("KEYPLANE_DATABASE_URL", "mysql://x", id="database-url"),
        pytest.param("KEYPLANE_PORT", "eighty", id="port"),
        pytest.param("KEYPLANE_PORT", "70000", id="port-range"),
        pytest.param("KEYPLANE_KEY_PREFIX", "KP!", id="prefix"),
        pytest.param("KEYPLANE_REDIS_URL", "http://x", id="redis-url"),
        pytest.param("KEYPLANE_TRUSTED_PROXIES", "10.0.0.0/33", id="proxies"),
        pytest.param("KEYPLANE_KEY_CACHE_TTL", "3601", id="cache-ttl-over-an-hour"),
        pytest.param("KEYPLANE_LOG_LEVEL", "loud", id="log-level"),
        pytest.param("KEYPLANE_SIGNUP", "maybe", id="signup"),
    ],
)
def test_a_wrong_setting_names_itself(variable: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path), variable: value})


def test_settings_defaults_need_no_configuration(tmp_path: Path) -> None:
    settings = Settings.from_env({"KEYPLANE_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'keyplane.db'}"
    assert (settings.host, settings.port, settings.key_prefix) == ("127.0.0.1", 8000, "kp")


def test_postgres_urls_get_the_psycopg_driver(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"KEYPLANE_DATA_DIR": str(tmp_path), "KEYPLANE_DATABASE_URL": "postgres://u@h:5432/db"}
    )
    assert settings.database_url == "postgresql+psycopg://u@h:5432/db"


def test_settings_repr_hides_database_and_redis_passwords(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "KEYPLANE_DATA_DIR": str(tmp_path),
            "KEYPLANE_DATABASE_URL": "postgresql://app:s3cret-db@db:5432/keyplane",
            "KEYPLANE_REDIS_URL": "redis://:s3cret-redis@cache:6379/0",
        }
    )
    shown = repr(settings)
    assert "s3cret" not in shown
    assert "db:5432/keyplane" in shown
    assert "s3cret" not in repr(Database(settings.database_url))


# -- after-commit callbacks: how a change announces itself ---------------------


def test_after_commit_callbacks_run_once_the_write_has_committed(services: Services) -> None:
    seen: list[str] = []

    def note() -> None:
        # The change is visible to a new transaction by the time the callback runs.
        with services.database.read() as session:
            seen.append(
                session.scalars(select(Organization.name).where(Organization.id == "org_ac")).one()
            )

    with services.database.write() as session:
        session.add(Organization(id="org_ac", name="After", created_at=datetime.now(UTC)))
        after_commit(session, note)
        after_commit(session, lambda: seen.append("second"))
        assert seen == []
    assert seen == ["After", "second"]


def test_after_commit_callbacks_never_run_when_the_write_rolls_back(services: Services) -> None:
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), services.database.write() as session:  # noqa: PT012
        after_commit(session, lambda: seen.append("told"))
        raise RuntimeError("boom")
    with pytest.raises(StateConflict), services.database.write() as session:  # noqa: PT012
        after_commit(session, lambda: seen.append("told"))
        session.add(Organization(id="org_dup", name="A", created_at=datetime.now(UTC)))
        session.add(Organization(id="org_dup", name="B", created_at=datetime.now(UTC)))
    assert seen == []
    with services.database.write() as session:
        pass  # callbacks of a failed transaction do not leak into the next one
    assert seen == []


def test_a_failing_after_commit_callback_is_logged_not_raised(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken() -> None:
        raise ValueError("cache unreachable")

    with services.database.write() as session:
        session.add(Organization(id="org_cb", name="Committed", created_at=datetime.now(UTC)))
        after_commit(session, broken)
        after_commit(session, lambda: seen.append("still told"))
    assert seen == ["still told"]
    assert "after-commit callback failed" in caplog.text
    with services.database.read() as session:
        assert session.scalars(select(Organization.id).where(Organization.id == "org_cb")).one()


def test_after_commit_refuses_a_read_session(services: Services) -> None:
    with services.database.read() as session, pytest.raises(RuntimeError, match="write"):
        after_commit(session, lambda: None)


# -- outages: one error above storage --------------------------------------------


def test_an_unreachable_database_raises_storage_unavailable_from_every_entry_point() -> None:
    database = Database(
        "postgresql+psycopg://keyplane:hunter2@127.0.0.1:1/none",
        connect_args={"connect_timeout": 1},
    )
    try:
        statement = select(Organization.id).where(Organization.id == "org_x")
        attempts: list[Callable[[], object]] = [
            lambda: database.ping(),
            lambda: database.schema_revision(),
            lambda: database.lookup(statement, {}),
        ]
        for attempt in attempts:
            with pytest.raises(StorageUnavailable) as raised:
                attempt()
            assert raised.value.cause == "OperationalError"
            assert "hunter2" not in str(raised.value) + raised.value.reason
            assert (
                raised.value.__cause__ is None
            )  # the driver's message (it may quote SQL) is not chained
        with pytest.raises(StorageUnavailable), database.read() as session:
            session.execute(statement)
        with pytest.raises(StorageUnavailable), database.write() as session:
            session.execute(statement)
    finally:
        database.dispose()
