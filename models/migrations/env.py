"""Alembic environment. The database URL comes from the caller (``models.db.upgrade``) or from
``SPIRALE_DATABASE_URL``; the engine is Spirale's own, so SQLite gets its pragmas and
``BEGIN IMMEDIATE``, which makes two processes upgrading at once queue instead of colliding."""

from __future__ import annotations

import logging.config
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers every table on SQLModel.metadata)
from models.db import make_engine, normalize_url
from spirale.errors import SpiraleError
from spirale.settings import Settings

# Any constant shared by every Spirale process: serializes concurrent upgrades on PostgreSQL.
_PG_MIGRATION_LOCK_KEY = 0x5350_4952

config = context.config
target_metadata = SQLModel.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    return str(url) if url else Settings().database_url


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        **options,
    )


def run_migrations_offline() -> None:
    _configure(url=normalize_url(_database_url()), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _lock_for_migration(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the migration transaction ends; the second process then sees the new head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Batch migrations rebuild SQLite tables (copy, drop, rename): with foreign keys enforced, the
    drop of a referenced table fails. The pragma only takes effect outside a transaction, so it is
    set on the driver connection before the migration transaction begins; integrity is checked with
    ``foreign_key_check`` before commit instead."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


def _check_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        violations = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if violations:
            raise SpiraleError(f"migration broke foreign keys: {violations[:5]}")


def run_migrations_online() -> None:
    engine = make_engine(_database_url())
    with engine.connect() as connection, _sqlite_foreign_keys_off(connection):
        _configure(connection=connection)
        with context.begin_transaction():
            _lock_for_migration(connection)
            context.run_migrations()
            _check_foreign_keys(connection)


if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
