"""Suite-wide fixtures: a real, migrated database per test.

By default each test gets a fresh SQLite file. With ``SPIRALE_TEST_DATABASE_URL`` set to a PostgreSQL
server (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), each test gets a fresh schema on
that server instead: ``CREATE SCHEMA t_<random>``, selected through ``options=-csearch_path=...`` in
the URL's query (so a subprocess given the URL lands in the same schema), dropped afterwards.

Markers: ``db`` marks tests that use the database; ``postgres`` marks tests that only make sense on
PostgreSQL, skipped with a visible reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from models.db import dispose_engine, make_engine, normalize_url, upgrade

TEST_DATABASE_ENV = "SPIRALE_TEST_DATABASE_URL"


def _server_url() -> URL | None:
    raw = os.environ.get(TEST_DATABASE_ENV)
    return normalize_url(raw) if raw else None


def _on_postgres() -> bool:
    url = _server_url()
    return url is not None and url.get_backend_name() == "postgresql"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: uses the test database (SQLite, or SPIRALE_TEST_DATABASE_URL)")


def pytest_report_header() -> str:
    url = _server_url()
    return f"database: {url.render_as_string(hide_password=True) if url else 'SQLite (a file per test)'}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _on_postgres():
        return
    skip = pytest.mark.skip(reason=f"needs PostgreSQL: set {TEST_DATABASE_ENV}=postgresql+psycopg://...")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (a copy costs far less than a migration)."""
    path = tmp_path_factory.mktemp("template") / "spirale.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    dispose_engine(url)  # closing the last connection folds the WAL into the file
    return path


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database that belongs to this test alone."""
    server = _server_url()
    if server is None:
        path = tmp_path / "spirale.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield from _sqlite_url(path)
    else:
        yield from _postgres_schema_url(server, migrate=True)


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """Like ``database_url``, but never migrated (for migration tests)."""
    server = _server_url()
    if server is None:
        yield from _sqlite_url(tmp_path / "empty.db")
    else:
        yield from _postgres_schema_url(server, migrate=False)


def _sqlite_url(path: Path) -> Iterator[str]:
    url = f"sqlite:///{path}"
    yield url
    dispose_engine(url)


def _postgres_schema_url(server: URL, *, migrate: bool) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    in_schema = server.update_query_dict({"options": f"-csearch_path={schema}"})
    url = in_schema.render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        dispose_engine(url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Engine:
    """The shared engine of this test's database."""
    return make_engine(database_url)
