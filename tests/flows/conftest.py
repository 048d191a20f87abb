"""Fixtures for the flows: one real Prefect test server for the whole session, and the Spirale
settings of each test (database, sequences, local outbox) set through the environment, as a served
flow run reads them."""

from __future__ import annotations

import os

# The server's task-run recorder and event persister write one event at a time by default; batched,
# a task run costs about a third. No scheduler (Prefect's test server runs none; this says so): the
# tests move the clock themselves, and a served deployment must not tick at the real time behind
# their back. Set before Prefect starts its test server (a subprocess that inherits this environment).
for _name, _value in {
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)

import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402
from sqlalchemy import Engine  # noqa: E402

from models.tables import Lead  # noqa: E402
from spirale.settings import PROJECT_ROOT, Settings  # noqa: E402
from tests.dispatch.conftest import lead_row  # noqa: E402

FIXTURE_LIBRARY = PROJECT_ROOT / "tests" / "dispatch" / "fixtures"
SHIPPED_LIBRARY = PROJECT_ROOT / "sequences"
LEADS = Lead.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real Prefect API (temporary database) shared by every flow test of the session."""
    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture
def outbox_dir(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def spirale_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, outbox_dir: Path, prefect_server: None
) -> Callable[..., Settings]:
    """Point the flows at this test's database and local outbox; returns a setter for the
    sequences directory (the dispatch fixtures by default) that gives back the settings."""

    def use(sequences_dir: Path = FIXTURE_LIBRARY, **extra: str) -> Settings:
        env = {
            "SPIRALE_DATABASE_URL": database_url,
            "SPIRALE_OUTBOX_DIR": str(outbox_dir),
            "SPIRALE_SEQUENCES_DIR": str(sequences_dir),
            "SPIRALE_SECRET_KEY": "flow-test-secret",
            "SPIRALE_PUBLIC_URL": "http://127.0.0.1:8080",
            "SPIRALE_EMAIL_CHANNEL": "local-outbox",
            "SPIRALE_SMS_CHANNEL": "local-outbox",
            **extra,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return Settings()

    use()
    return use


MakeLeads = Callable[..., list[uuid.UUID]]


@pytest.fixture
def make_leads(engine: Engine) -> MakeLeads:
    counter = iter(range(10**9))

    def make(n: int, *, now: datetime, **overrides: Any) -> list[uuid.UUID]:
        rows = [lead_row(next(counter), now, **overrides) for _ in range(n)]
        with engine.begin() as conn:
            conn.execute(LEADS.insert(), rows)
        return [row["id"] for row in rows]

    return make
