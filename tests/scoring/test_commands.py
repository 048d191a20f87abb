"""``spirale lead import``, ``spirale lead show``, ``spirale tasks`` and ``spirale task done``
through the real command line, on the test database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from spirale.cli import app
from spirale.settings import get_settings
from tests.scoring.helpers import LEADS, MONDAY_10H, SEQUENCES_DIR, TASKS, lead_by_email, live_sequences

pytestmark = pytest.mark.db
runner = CliRunner()
NOW = ["--now", MONDAY_10H.isoformat()]

GOOD = """\
email;first_name;company;job_title;company_size;postcode;customer_class;last_purchase_at;consent_email
camille@atelier-martin.fr;Camille;Atelier Martin;Gérante;25;75011;;;oui
achats@client-fidele.fr;Jeanne;Client Fidèle;Acheteuse;;69003;A;2026-10-01;oui
veille@hubspot.com;Paul;HubSpot;Analyste;;;;;non
"""


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPIRALE_DATABASE_URL", database_url)
    monkeypatch.setenv("SPIRALE_SEQUENCES_DIR", str(SEQUENCES_DIR))
    monkeypatch.setenv("SPIRALE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("SPIRALE_EMAIL_CHANNEL", "local-outbox")
    monkeypatch.setenv("SPIRALE_SMS_CHANNEL", "local-outbox")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "leads.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_import_routes_prospects_and_customers_and_keeps_disqualified_with_reason(
    cli_env: None, engine: Engine, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["lead", "import", str(write(tmp_path, GOOD)), "--format", "json", *NOW])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["imported"] and summary["created"] == 3 and summary["rejected"] == []
    assert summary["disqualified"] == [
        {"line": 4, "email": "veille@hubspot.com", "reason": "competitor domain hubspot.com"}
    ]
    assert summary["statuses"] == {"warm": 1, "customer": 1, "disqualified": 1}
    with engine.connect() as conn:
        camille = lead_by_email(conn, "camille@atelier-martin.fr")
        assert (
            camille["fit_score"] == 60
            and camille["consent_email"]
            and camille["attributes"]["postcode"] == "75011"
        )
        assert live_sequences(conn, camille["id"]) == ["whitepaper-nurture"]
        client = lead_by_email(conn, "achats@client-fidele.fr")
        assert client["status"] == "customer" and live_sequences(conn, client["id"]) == ["customer-care"]
        competitor = lead_by_email(conn, "veille@hubspot.com")
        assert competitor["status"] == "disqualified" and live_sequences(conn, competitor["id"]) == []


def test_a_file_with_a_bad_row_imports_nothing_and_says_why(
    cli_env: None, engine: Engine, tmp_path: Path
) -> None:
    bad = (
        GOOD
        + "pas-une-adresse;X;;;;;;;\nbob@pme.fr;Bob;;;;;Z;hier;peut-être\ncamille@atelier-martin.fr;;;;;;;;\n"
    )
    path = write(tmp_path, bad)
    result = runner.invoke(app, ["lead", "import", str(path), *NOW])
    assert result.exit_code == 1
    assert f"{path}:5: pas-une-adresse: email: invalid email address" in result.output
    assert "customer_class: expected A, B or C, got 'Z'" in result.output
    assert "last_purchase_at: expected a date like 2025-03-31, got 'hier'" in result.output
    assert "consent_email: expected yes/no, got 'peut-être'" in result.output
    assert f"{path}:7: camille@atelier-martin.fr: email: already on line 2" in result.output
    assert "nothing imported: 3 row(s) to fix" in result.output
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LEADS)).scalar_one() == 0
    skipped = runner.invoke(app, ["lead", "import", str(path), "--skip-invalid", "--format", "json", *NOW])
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.output)["created"] == 3


def test_show_explains_a_lead(cli_env: None, engine: Engine, tmp_path: Path) -> None:
    runner.invoke(app, ["lead", "import", str(write(tmp_path, GOOD)), *NOW])
    result = runner.invoke(app, ["lead", "show", "Camille@Atelier-Martin.fr", "--format", "json", *NOW])
    assert result.exit_code == 0, result.output
    profile = json.loads(result.output)
    assert (profile["status"], profile["fit"], profile["grade"]) == ("warm", 60, "A")
    assert [row["rule"] for row in profile["ledger"]] == [
        "fit.company_size.sme",
        "fit.country.france",
        "fit.job_title.decision-maker",
        "status.warm",
    ]
    assert sum(row["now"] for row in profile["ledger"]) == profile["fit"]
    assert [e["sequence_name"] for e in profile["enrollments"]] == ["whitepaper-nurture"]
    table = runner.invoke(app, ["lead", "show", "camille@atelier-martin.fr", *NOW])
    assert table.exit_code == 0 and "fit: 60 (grade A)" in table.output and "score ledger" in table.output
    missing = runner.invoke(app, ["lead", "show", "nobody@nowhere.fr", *NOW])
    assert missing.exit_code == 1 and "no lead with the email nobody@nowhere.fr" in missing.output


CALLBACK = """\
email,first_name,job_title,postcode,phone
claire@negoce-lyon.fr,Claire,Directrice commerciale,69003,06 12 34 56 78
"""


def test_tasks_list_and_done(cli_env: None, engine: Engine, tmp_path: Path) -> None:
    runner.invoke(app, ["lead", "import", str(write(tmp_path, CALLBACK)), *NOW])
    with engine.begin() as conn:  # the lead turns hot (as the event processor would route it)
        from scoring.routing import route_moves
        from scoring.rules import load_rules
        from scoring.status import StatusMove
        from sequences.catalog import SequenceCatalog

        lead = lead_by_email(conn, "claire@negoce-lyon.fr")
        conn.execute(LEADS.update().values(status="hot"))
        route_moves(
            conn,
            moves=[StatusMove(lead["id"], "warm", "hot", "test")],
            now=MONDAY_10H,
            rules=load_rules(SEQUENCES_DIR / "scoring.yaml"),
            catalog=SequenceCatalog.open(SEQUENCES_DIR),
        )
        task_id = conn.execute(select(TASKS.c.id)).scalar_one()
    listing = runner.invoke(app, ["tasks", "--owner", "bruno", "--format", "json", *NOW])
    assert listing.exit_code == 0, listing.output
    tasks = json.loads(listing.output)
    assert [(t["id"], t["kind"], t["email"]) for t in tasks] == [
        (str(task_id), "call", "claire@negoce-lyon.fr")
    ]
    assert (
        json.loads(runner.invoke(app, ["tasks", "--owner", "alice", "--format", "json", *NOW]).output) == []
    )
    table = runner.invoke(app, ["tasks", *NOW])
    assert table.exit_code == 0 and str(task_id)[:8] in table.output

    bad = runner.invoke(app, ["task", "done", str(task_id)[:8], "--outcome", "maybe", *NOW])
    assert bad.exit_code == 1 and "unknown outcome 'maybe'" in bad.output
    done = runner.invoke(app, ["task", "done", str(task_id)[:8], "--outcome", "not-interested", *NOW])
    assert done.exit_code == 0, done.output
    assert (
        "the sales cadence ends (not interested)" in done.output and "goes back to marketing" in done.output
    )
    with engine.connect() as conn:
        lead = lead_by_email(conn, "claire@negoce-lyon.fr")
        # Directrice commerciale in France: fit 35 (B); with its engagement reset, B is cold.
        assert lead["status"] == "cold" and live_sequences(conn, lead["id"]) == ["incubator"]
    again = runner.invoke(app, ["task", "done", str(task_id), "--outcome", "not-interested", *NOW])
    assert again.exit_code == 0 and "already logged" in again.output
