"""``spirale dispatch``: one tick from the command line, in one process or several, and clear
errors for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from models.tables import OutboxMessage
from spirale.cli import app
from spirale.settings import get_settings
from tests.dispatch.conftest import FIXTURES, MONDAY_9H, Enroll, MakeLeads

pytestmark = pytest.mark.db
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Iterator[Path]:
    outbox = tmp_path / "outbox"
    for name, value in {
        "SPIRALE_DATABASE_URL": database_url,
        "SPIRALE_SEQUENCES_DIR": str(FIXTURES),
        "SPIRALE_OUTBOX_DIR": str(outbox),
        "SPIRALE_EMAIL_CHANNEL": "local-outbox",
        "SPIRALE_SMS_CHANNEL": "local-outbox",
        "SPIRALE_SECRET_KEY": "test-secret",
        "SPIRALE_DISPATCH_BATCH_SIZE": "25",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield outbox
    get_settings.cache_clear()


@pytest.mark.parametrize("processes", [1, 2])
def test_dispatch_sends_the_due_steps_once_and_prints_the_tick(
    cli_env: Path, engine: Engine, make_leads: MakeLeads, enroll: Enroll, processes: int
) -> None:
    enroll(make_leads(60), "drip")
    now = MONDAY_9H.isoformat()
    result = runner.invoke(app, ["dispatch", "--now", now, "--processes", str(processes)])
    assert result.exit_code == 0, result.output
    assert "sent" in result.output and "60" in result.output
    again = runner.invoke(app, ["dispatch", "--now", now, "--processes", str(processes)])
    assert again.exit_code == 0 and "sent" not in again.output
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OUTBOX)).scalar_one() == 60
    assert len(list((cli_env / "email").glob("*.eml"))) == 60


def test_dispatch_refuses_bad_input_with_a_clear_message(cli_env: Path) -> None:
    result = runner.invoke(app, ["dispatch", "--now", "lundi", "--processes", "1"])
    assert result.exit_code == 2
    assert "--now: expected an ISO-8601 instant, got 'lundi'" in result.output
    refused = runner.invoke(app, ["dispatch", "--processes", "0"])
    assert refused.exit_code == 2
    assert "Invalid value for '--processes'" in refused.output
