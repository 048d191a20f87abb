"""``spirale privacy export|erase|purge`` through the real command line, and secrets kept out of
their output and logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import Engine
from typer.testing import CliRunner

from models.db import dispose_engine
from spirale.cli import app
from spirale.settings import get_settings
from tests.privacy.conftest import CAMILLE, LEADS, History, count_rows

pytestmark = pytest.mark.db
runner = CliRunner()


def privacy(*args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["privacy", *args], input=stdin, env={"COLUMNS": "200"})


def test_export_prints_the_person_as_json(cli_env: dict[str, str], history: History) -> None:
    result = privacy("export", CAMILLE)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["lead"]["id"] == str(history.camille)
    assert data["outbox"]


def test_export_can_write_a_file(cli_env: dict[str, str], history: History, tmp_path: Path) -> None:
    out = tmp_path / "exports" / "camille.json"
    result = privacy("export", CAMILLE, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["email"] == CAMILLE
    assert f"wrote {out}" in result.stderr


def test_erase_asks_first_and_does_nothing_when_refused(
    cli_env: dict[str, str], engine: Engine, history: History
) -> None:
    refused = privacy("erase", CAMILLE, stdin="n\n")
    assert refused.exit_code == 1
    assert "nothing erased" in refused.stderr
    assert count_rows(engine, LEADS, LEADS.c.id == history.camille) == 1

    accepted = privacy("erase", CAMILLE, stdin="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "blocked by hash on: email, sms" in accepted.stdout
    assert count_rows(engine, LEADS, LEADS.c.id == history.camille) == 0


def test_erase_with_yes_does_not_ask(cli_env: dict[str, str], engine: Engine, history: History) -> None:
    result = privacy("erase", CAMILLE, "--yes")
    assert result.exit_code == 0, result.output
    assert "leads 1" in result.stdout
    assert count_rows(engine, LEADS) == 1


def test_a_malformed_address_is_a_usage_error(cli_env: dict[str, str]) -> None:
    result = privacy("erase", "camille-at-example", "--yes")
    assert result.exit_code == 2
    assert "invalid email address" in result.stderr
    assert "Traceback" not in result.output


def test_purge_reports_what_it_would_and_did_remove(
    cli_env: dict[str, str], engine: Engine, history: History
) -> None:
    dry = privacy("purge", "--dry-run", "--years", "3")
    assert dry.exit_code == 0, dry.output
    assert "would purge 0 prospects inactive since" in dry.stdout
    done = privacy("purge")
    assert done.exit_code == 0, done.output
    assert "purged 0 prospects" in done.stdout
    assert count_rows(engine, LEADS) == 2


SECRETS = {
    "SPIRALE_SECRET_KEY": "sk-unsubscribe-0123456789abcdef",
    "SPIRALE_SENDGRID_API_KEY": "SG.very-secret-api-key-value",
    "SPIRALE_TWILIO_AUTH_TOKEN": "twilio-auth-token-fedcba987654",
}


@pytest.fixture
def secrets(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SPIRALE_TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    get_settings.cache_clear()
    return SECRETS


def assert_no_secret(text: str, secrets: dict[str, str]) -> None:
    for name, value in secrets.items():
        assert value not in text, f"{name} leaked"


def test_secrets_never_appear_in_output_or_logs(
    secrets: dict[str, str], history: History, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    results = [
        privacy("export", CAMILLE),
        privacy("export", "not-an-address"),
        privacy("purge", "--dry-run"),
        privacy("erase", CAMILLE, "--yes"),
        privacy("erase", CAMILLE, "--yes"),
    ]
    assert [r.exit_code for r in results] == [0, 2, 0, 0, 0]
    for result in results:
        assert_no_secret(result.output, secrets)
    assert_no_secret(caplog.text, secrets)


def test_an_unreachable_database_is_one_clear_line_without_its_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = "postgresql+psycopg://spirale:db-password-s3cr3t@127.0.0.1:1/spirale?connect_timeout=2"
    monkeypatch.setenv("SPIRALE_DATABASE_URL", url)
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG)
    try:
        result = privacy("purge", "--dry-run")
    finally:
        dispose_engine(url)
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot use the database postgresql+psycopg://spirale:***@")
    assert len(result.stderr.strip().splitlines()) == 1
    assert_no_secret(result.output + caplog.text, {**SECRETS, "password": "db-password-s3cr3t"})


def test_the_lead_group_offers_the_same_gdpr_requests(
    cli_env: dict[str, str], engine: Engine, history: History
) -> None:
    exported = runner.invoke(app, ["lead", "export", CAMILLE], env={"COLUMNS": "200"})
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["lead"]["id"] == str(history.camille)
    erased = runner.invoke(app, ["lead", "erase", CAMILLE, "--yes"], env={"COLUMNS": "200"})
    assert erased.exit_code == 0, erased.output
    assert count_rows(engine, LEADS, LEADS.c.id == history.camille) == 0
