"""Importing a file twice updates the same leads; a lead disqualified once can qualify again."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from scoring.rules import ScoringRules
from scoring.team import Team
from sequences.catalog import SequenceCatalog
from spirale.lead_import import check_rows, import_leads
from tests.scoring.helpers import LEADS, LEDGER, MONDAY_10H, lead_by_email, live_sequences

pytestmark = pytest.mark.db


def test_reimport_updates_and_requalifies(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team
) -> None:
    first = [{"email": "marc@industrie-sud.fr", "job_title": "Consultant", "company_size": "30"}]
    report = import_leads(
        engine, rows=first, source="import:a.csv", now=MONDAY_10H, rules=rules, catalog=catalog, team=team
    )
    assert report.disqualified == [(2, "marc@industrie-sud.fr", "job title 'Consultant' (consultant)")]
    second = [{"email": "Marc@Industrie-Sud.fr", "job_title": "Gérant", "company_size": "30"}]
    report = import_leads(
        engine, rows=second, source="import:b.csv", now=MONDAY_10H, rules=rules, catalog=catalog, team=team
    )
    assert (report.created, report.updated, dict(report.statuses)) == (0, 1, {"warm": 1})
    with engine.connect() as conn:
        lead = lead_by_email(conn, "marc@industrie-sud.fr")
        assert lead["status"] == "warm" and lead["disqualified_reason"] is None and lead["fit_score"] == 60
        assert lead["source"] == "import:a.csv"  # where the lead first came from is kept
        assert live_sequences(conn, lead["id"]) == ["whitepaper-nurture"]
        assert conn.execute(select(func.count()).select_from(LEADS)).scalar_one() == 1
        kinds = conn.execute(select(LEDGER.c.kind, LEDGER.c.rule).where(LEDGER.c.lead_id == lead["id"])).all()
    assert ("qualification", "qualification.job_titles") in kinds and ("status", "status.warm") in kinds


def test_check_rows_reports_every_problem_of_a_row() -> None:
    accepted, rejected = check_rows(
        [
            {"email": "a@pme.fr", "phone": "123", "country": "France", "consent_sms": "bof"},
            {"email": "b@pme.fr"},
        ]
    )
    assert [line for line, _ in accepted] == [3]
    assert len(rejected) == 1 and rejected[0].line == 2
    assert [reason.split(":")[0] for reason in rejected[0].reasons] == ["country", "phone", "consent_sms"]
