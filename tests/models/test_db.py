"""The engine: SQLite tuning and write locking, URL handling, sessions, the migration guard."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.engine import make_url

from models.db import (
    current_revision,
    dispose_engine,
    head_revision,
    make_engine,
    normalize_url,
    read_only_connection,
    require_migrated,
    safe_url,
    session_scope,
    write_transaction,
)
from models.leads import LEADS
from models.tables import Lead
from spirale.errors import ConfigError

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'spirale.db'}"
    yield url
    dispose_engine(url)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/spirale", "postgresql+psycopg://u:p@db:5432/spirale"),
        ("postgres://u@db/spirale", "postgresql+psycopg://u@db/spirale"),
        ("postgresql+psycopg://u@db/spirale", "postgresql+psycopg://u@db/spirale"),
        ("sqlite:///var/spirale.db", "sqlite:///var/spirale.db"),
    ],
)
def test_postgres_urls_go_to_psycopg(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


def test_plain_postgresql_url_builds_a_psycopg_engine() -> None:
    url = "postgresql://spirale:pw@127.0.0.1:1/none"
    try:
        assert make_engine(url).dialect.driver == "psycopg"
    finally:
        dispose_engine(url)


def test_safe_url_masks_the_password() -> None:
    shown = safe_url("postgresql://spirale:s3cr%40t@db:5432/spirale")
    assert "s3cr" not in shown
    assert shown == "postgresql+psycopg://spirale:***@db:5432/spirale"


def test_unsupported_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported database mysql://u:\\*\\*\\*@h/db"):
        make_engine("mysql://u:pw@h/db")


def test_engines_are_cached_per_url(sqlite_url: str) -> None:
    assert make_engine(sqlite_url) is make_engine(sqlite_url)
    other = sqlite_url.replace("spirale.db", "other.db")
    try:
        assert make_engine(other) is not make_engine(sqlite_url)
    finally:
        dispose_engine(other)


def test_sqlite_is_tuned_and_its_directory_created(sqlite_url: str) -> None:
    with make_engine(sqlite_url).connect() as conn:
        pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in _PRAGMAS}
    assert pragmas == _PRAGMAS
    assert Path(make_url(sqlite_url).database or "").parent.is_dir()


_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 1,
    "foreign_keys": 1,
    "busy_timeout": 30_000,
    "cache_size": -65_536,
    "wal_autocheckpoint": 16_384,
}


def test_sqlite_write_transactions_take_the_write_lock_at_begin(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER)")
    path = make_url(sqlite_url).database or ""
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM counter").scalar()  # a read, yet the lock is held
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            assert other.execute("SELECT count(*) FROM counter").fetchone() == (0,)  # readers still read
        finally:
            other.close()


def test_read_only_connections_read_beside_a_writer(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (1)")
    with engine.begin() as writer:
        writer.exec_driver_sql("INSERT INTO counter VALUES (2)")
        with read_only_connection(engine) as reader, reader.begin():
            assert reader.exec_driver_sql("SELECT count(*) FROM counter").scalar() == 1


def test_write_transactions_take_turns_through_the_writers_lock_file(sqlite_url: str) -> None:
    """While one write transaction runs, the next one waits on ``<database>-writers`` (not in
    SQLite's busy handler) and runs as soon as the first commits; a plain writer still works."""
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE journal (who TEXT, at INTEGER)")
    order: list[str] = []
    first_in = threading.Event()

    def second() -> None:
        first_in.wait()
        with write_transaction(engine) as conn:
            order.append("second")
            conn.exec_driver_sql("INSERT INTO journal VALUES ('second', 2)")

    thread = threading.Thread(target=second)
    thread.start()
    with write_transaction(engine) as conn:
        first_in.set()
        conn.exec_driver_sql("INSERT INTO journal VALUES ('first', 1)")
        thread.join(timeout=0.3)
        assert thread.is_alive()  # waiting for its turn
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"]
    assert Path(f"{make_url(sqlite_url).database}-writers").exists()
    with engine.begin() as conn:  # writers outside the turns are not blocked by the file
        conn.exec_driver_sql("INSERT INTO journal VALUES ('plain', 3)")
        assert conn.exec_driver_sql("SELECT count(*) FROM journal").scalar() == 3


@pytest.mark.db
def test_write_transaction_commits_and_rolls_back(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE marks (n INTEGER)")
    with pytest.raises(RuntimeError), write_transaction(engine) as conn:
        conn.exec_driver_sql("INSERT INTO marks VALUES (1)")
        raise RuntimeError("abort")
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("INSERT INTO marks VALUES (2)")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM marks").scalars().all() == [2]


@pytest.mark.db
def test_concurrent_read_then_write_transactions_never_deadlock(engine: Engine) -> None:
    """Deferred transactions that read then write fail with 'database is locked' on SQLite when two
    of them try to upgrade their read lock; ``BEGIN IMMEDIATE`` makes them queue instead."""
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(10):
                with engine.begin() as conn:
                    count = conn.execute(select(func.count()).select_from(LEADS)).scalar_one()
                    conn.execute(insert(LEADS), [_lead_row(f"w{worker}-{i}-{count}@example.fr")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LEADS)).scalar_one() == 40


def _lead_row(email: str) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "email": email,
        "first_name": "",
        "last_name": "",
        "company": "",
        "job_title": "",
        "country": "FR",
        "consent_email": False,
        "consent_sms": False,
        "status": "cold",
        "attributes": {},
        "created_at": NOW,
        "updated_at": NOW,
    }


@pytest.mark.db
def test_session_scope_commits_on_success_and_rolls_back_on_error(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Lead(email="kept@example.fr", created_at=NOW, updated_at=NOW))
    with pytest.raises(RuntimeError, match="boom"), session_scope(engine) as session:
        session.add(Lead(email="dropped@example.fr", created_at=NOW, updated_at=NOW))
        session.flush()
        raise RuntimeError("boom")
    with engine.connect() as conn:
        assert set(conn.execute(select(LEADS.c.email)).scalars()) == {"kept@example.fr"}


@pytest.mark.db
def test_session_scope_stores_aware_utc_instants(engine: Engine) -> None:
    with session_scope(engine) as session:
        lead = Lead(email="tz@example.fr", created_at=NOW, updated_at=NOW)
        session.add(lead)
    with session_scope(engine) as session:
        stored = session.get(Lead, lead.id)
        assert stored is not None
        assert stored.created_at == NOW and stored.created_at.tzinfo is not None


@pytest.mark.db
def test_a_migrated_database_passes_the_guard(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    require_migrated(engine)


@pytest.mark.db
def test_an_empty_database_is_refused_with_the_command_to_run(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    assert current_revision(engine) is None
    expected = f"database {safe_url(empty_database_url)} is not migrated: run `spirale db upgrade`"
    with pytest.raises(ConfigError) as caught:
        require_migrated(engine)
    assert str(caught.value) == expected


@pytest.mark.db
def test_an_outdated_database_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    with pytest.raises(ConfigError, match="is not migrated: run `spirale db upgrade`"):
        require_migrated(engine)


@pytest.mark.postgres
@pytest.mark.db
def test_the_guard_never_shows_the_password(empty_database_url: str) -> None:
    with_password = make_url(empty_database_url).set(password="hunter2").render_as_string(hide_password=False)
    try:
        with pytest.raises(ConfigError) as caught:
            require_migrated(make_engine(with_password))  # trust auth ignores the password
    finally:
        dispose_engine(with_password)
    assert "hunter2" not in str(caught.value) and ":***@" in str(caught.value)
