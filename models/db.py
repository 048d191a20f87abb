"""The database engine, sessions and schema version.

One URL selects the database (``SPIRALE_DATABASE_URL``): SQLite by default, PostgreSQL (psycopg 3) at
scale. Engines are cached per URL, so every caller in a process shares one pool.

SQLite is tuned for several writers in several processes: WAL (readers never block the writer),
``synchronous=NORMAL``, a 30 s ``busy_timeout``, foreign keys on. Its write transactions start with
``BEGIN IMMEDIATE``: the write lock is taken up front, so two writers queue on ``busy_timeout``
instead of both starting as readers and deadlocking when they upgrade to writers ("database is
locked"). Read-only work that must not queue behind writers uses :func:`read_only_connection`.

Callers pass every instant they store (``now``); nothing here reads the clock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from spirale.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: writers wait in SQLite's busy handler instead
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30
READ_ONLY_OPTION = "spirale_read_only"
SQLITE_CACHE_KIB = 64 * 1024
SQLITE_CHECKPOINT_PAGES = 16_384

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def normalize_url(url: str) -> URL:
    """Parse ``url``, sending plain ``postgresql://`` (and ``postgres://``) URLs to psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL as it may be shown to a person or a log: the password is masked."""
    parsed = normalize_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def make_engine(url: str) -> Engine:
    """The process-wide engine for ``url`` (created on first use, then cached)."""
    parsed = normalize_url(url)
    key = parsed.render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create_engine(parsed)
            _engines[key] = engine
        return engine


def dispose_engine(url: str) -> None:
    """Close the pooled connections of ``url``'s engine and forget it (tests, schema drops)."""
    key = normalize_url(url).render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.pop(key, None)
    if engine is not None:
        engine.dispose()


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url)
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise ConfigError(f"unsupported database {safe_url(url)}: use sqlite:/// or postgresql+psycopg://")


def _create_sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    if not in_memory:
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
    if in_memory:
        # Each connection to :memory: is its own database: share one connection.
        options["poolclass"] = StaticPool
    engine = create_engine(url, **options)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 driver: SQLAlchemy emits BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # 64 MiB of page cache per connection (SQLite's default is 2 MiB): random UUID keys touch
        # pages all over the indexes, and a tick over a large backlog re-reads them constantly.
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        # Checkpoint every 64 MiB of WAL (not every 4 MiB: fewer syncs during a large tick) ...
        cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT_PAGES}")
        # ... and the WAL file shrinks back to this size once a checkpoint has emptied it.
        cursor.execute(f"PRAGMA journal_size_limit = {SQLITE_CHECKPOINT_PAGES * 4096}")
    finally:
        cursor.close()


def _begin_sqlite_transaction(conn: Connection) -> None:
    read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


@contextmanager
def read_only_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only. On SQLite its transactions start DEFERRED, so reports and
    lookups run beside a writer instead of waiting for the write lock."""
    with engine.connect() as conn:
        yield conn.execution_options(**{READ_ONLY_OPTION: True})


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for the dispatch hot loop. On a SQLite file, the writers of all processes
    also take turns through an ``flock`` on ``<database>-writers``: the kernel wakes the next writer
    the moment the lock is released, where SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms
    between retries. The database's locking still does the real work; this only queues waiters.
    Other databases: plain ``engine.begin()``."""
    path = _writers_lock_path(engine)
    if path is None:
        with engine.begin() as conn:
            yield conn
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with engine.begin() as conn:
            yield conn
    finally:
        os.close(fd)  # releases the lock


def _writers_lock_path(engine: Engine) -> str | None:
    url = engine.url
    if fcntl is None or url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return f"{url.database}-writers"


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url``, independent of the working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option, so a '%' in a password is not interpolated.
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base`` removes every table)."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest migration shipped with this code."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or ``None`` when it was never migrated."""
    with read_only_connection(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_migrated(engine: Engine) -> None:
    """Raise :class:`ConfigError` unless the database schema is at the newest migration."""
    if current_revision(engine) != head_revision():
        raise ConfigError(f"database {safe_url(engine.url)} is not migrated: run `spirale db upgrade`")
