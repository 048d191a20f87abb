"""``spirale serve`` and ``spirale server`` before anything runs: a clear refusal on an unmigrated
database, and the Prefect server environment (telemetry off, batched recording)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from spirale.cli import app
from spirale.commands.server import SERVER_ENV, server_command, server_env
from spirale.settings import get_settings

runner = CliRunner()


@pytest.fixture
def unmigrated(monkeypatch: pytest.MonkeyPatch, empty_database_url: str) -> Iterator[None]:
    monkeypatch.setenv("SPIRALE_DATABASE_URL", empty_database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.db
@pytest.mark.usefixtures("unmigrated")
def test_serve_refuses_an_unmigrated_database() -> None:
    result = runner.invoke(app, ["serve", "--port", "8099"])
    assert result.exit_code == 1
    assert "not migrated: run `spirale db upgrade`" in result.output


def test_the_local_prefect_server_runs_quiet_and_batched() -> None:
    env = server_env({"PATH": "/bin", "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500"})
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1"
    assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "100"
    # An operator's own tuning wins.
    assert env["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE"] == "500"
    assert set(SERVER_ENV) <= set(env)
    assert server_command("127.0.0.1", 4200)[-6:] == [
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        "4200",
    ]
