"""Migrations: the schema they build is exactly the one ``models/tables.py`` declares, on SQLite and
PostgreSQL; they go down as well as up; concurrent upgrades queue; the CLI reports without secrets."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel
from typer.testing import CliRunner

import models.tables  # noqa: F401  (registers every table)
from models.claims import ENROLLMENTS
from models.db import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    safe_url,
    upgrade,
)
from models.leads import bulk_insert_leads
from spirale.cli import app

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
APP_TABLES = set(SQLModel.metadata.tables)
STAMPS = {"enrolled_at": NOW, "updated_at": NOW}


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_upgrade_from_empty_builds_exactly_the_declared_schema(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    assert tables(engine) == set()
    upgrade(empty_database_url)
    assert current_revision(engine) == head_revision()
    assert tables(engine) == APP_TABLES | {"alembic_version"}
    assert differences(engine) == []


def test_every_revision_goes_down_and_up_again(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    revisions = [script.revision for script in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()]
    upgrade(empty_database_url)
    for revision in revisions:  # newest first
        down = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision).down_revision
        downgrade(empty_database_url, str(down) if down else "base")
        assert current_revision(engine) == down
    assert tables(engine) <= {"alembic_version"}
    upgrade(empty_database_url)
    assert differences(engine) == []


def test_downgrade_keeps_working_with_data_in_the_tables(database_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        bulk_insert_leads(conn, [{"email": "anne@example.fr"}], now=NOW)
    downgrade(database_url, "base")
    assert tables(engine) <= {"alembic_version"}


def test_one_live_enrollment_per_lead_and_sequence(engine: Engine) -> None:
    lead_id = uuid.uuid4()
    with engine.begin() as conn:
        bulk_insert_leads(conn, [{"id": lead_id, "email": "anne@example.fr"}], now=NOW)

    def enroll(state: str) -> None:
        row = {"id": uuid.uuid4(), "lead_id": lead_id, "sequence_name": "nurture", "sequence_version": "1"}
        with engine.begin() as conn:
            conn.execute(insert(ENROLLMENTS), [{**row, "state": state, **STAMPS}])

    enroll("completed")
    enroll("completed")  # finished enrollments do not count
    enroll("active")
    with pytest.raises(IntegrityError):
        enroll("paused")


def test_offline_mode_renders_the_sql(database_url: str) -> None:
    config = alembic_config(database_url)
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE leads" in sql
    partial = "CREATE UNIQUE INDEX ux_enrollments_live ON enrollments (lead_id, sequence_name) WHERE state IN"
    assert partial in sql


def test_concurrent_upgrades_from_two_processes_both_succeed(empty_database_url: str) -> None:
    """One through ``spirale db upgrade``, one through ``alembic -c alembic.ini`` (which reads
    ``SPIRALE_DATABASE_URL``): the second waits for the first, then finds the schema at head."""
    env = {**os.environ, "SPIRALE_DATABASE_URL": empty_database_url}
    commands = [
        [sys.executable, "-m", "spirale.cli", "db", "upgrade", "--url", empty_database_url],
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
    ]
    processes = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd in commands
    ]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    engine = make_engine(empty_database_url)
    assert current_revision(engine) == head_revision()
    assert differences(engine) == []


def test_cli_reports_the_revision_and_upgrades(empty_database_url: str) -> None:
    runner = CliRunner()
    shown = safe_url(empty_database_url)
    before = runner.invoke(app, ["db", "current", "--url", empty_database_url], terminal_width=400)
    assert before.exit_code == 0
    assert before.output == f"database {shown} is not migrated: run `spirale db upgrade`\n"
    done = runner.invoke(app, ["db", "upgrade", "--url", empty_database_url], terminal_width=400)
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        f"upgrading database {shown} to head",
        f"database {shown} is at revision {head_revision()}",
    ]
    after = runner.invoke(app, ["db", "current", "--url", empty_database_url], terminal_width=400)
    assert after.output == f"database {shown} is at revision {head_revision()} (head)\n"


def test_cli_failure_masks_the_password() -> None:
    url = "postgresql://spirale:hunter2@127.0.0.1:1/nowhere"
    result = CliRunner().invoke(app, ["db", "current", "--url", url], terminal_width=400)
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert "cannot read database postgresql+psycopg://spirale:***@127.0.0.1:1/nowhere" in result.output
