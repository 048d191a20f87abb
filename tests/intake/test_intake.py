"""Form intake on a real database: qualification, scoring, routing, idempotence, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from sequences.catalog import SequenceCatalog
from spirale.intake import IntakeSetup, process_submissions
from spirale.settings import Settings
from tests.scoring.helpers import (
    ENROLLMENTS,
    EVENTS,
    LEADS,
    LEDGER,
    MONDAY_10H,
    SEQUENCES_DIR,
    SUBMISSIONS,
    TASKS,
    lead_by_email,
    live_sequences,
    make_settings,
    outbox_emails,
    store_submissions,
    submission,
)

pytestmark = pytest.mark.db


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def catalog() -> SequenceCatalog:
    return SequenceCatalog.open(SEQUENCES_DIR)


@pytest.fixture(scope="module")
def setup() -> IntakeSetup:
    return IntakeSetup.load(SEQUENCES_DIR)


def run(engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup):  # type: ignore[no-untyped-def]
    return process_submissions(engine, now=MONDAY_10H, settings=settings, catalog=catalog, setup=setup)


def test_a_competitor_download_is_disqualified_with_its_reason(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup
) -> None:
    row = submission("livre-blanc", "veille@hubspot.com", job_title="Directeur marketing")
    store_submissions(engine, row)
    report = run(engine, settings, catalog, setup)
    assert report.processed == 1 and report.disqualified == {"competitors": 1}
    with engine.connect() as conn:
        lead = lead_by_email(conn, "veille@hubspot.com")
        assert lead["id"] == row["lead_id"]  # the id the form was answered with
        assert lead["status"] == "disqualified"
        assert lead["disqualified_reason"] == "competitor domain hubspot.com"
        assert live_sequences(conn, lead["id"]) == []
        rules = conn.execute(select(LEDGER.c.rule).where(LEDGER.c.lead_id == lead["id"])).scalars().all()
        assert "qualification.competitors" in rules
        assert conn.execute(select(SUBMISSIONS.c.status)).scalar_one() == "processed"


def test_a_warm_download_goes_to_the_forms_sequence_and_a_cold_one_to_the_incubator(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup
) -> None:
    warm = submission("livre-blanc", "camille@atelier-martin.fr", job_title="Gérante", company_size="25")
    cold = submission("livre-blanc", "paul@atelier-paul.fr")
    store_submissions(engine, warm, cold)
    report = run(engine, settings, catalog, setup)
    assert report.statuses == {"warm": 1, "cold": 1}
    with engine.connect() as conn:
        camille = lead_by_email(conn, "camille@atelier-martin.fr")
        # Gérante 30 + SME 20 + France 10 = 60 (A); the download's 10 points make it warm.
        assert camille["fit_score"] == 60 and camille["engagement_score"] == 10
        assert live_sequences(conn, camille["id"]) == ["whitepaper-nurture"]
        paul = lead_by_email(conn, "paul@atelier-paul.fr")
        assert paul["status"] == "cold" and live_sequences(conn, paul["id"]) == ["incubator"]


def test_a_callback_request_from_a_good_fit_is_hot_with_a_task_and_one_notification(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup
) -> None:
    row = submission(
        "demande-rappel",
        "claire@negoce-lyon.fr",
        first_name="Claire",
        job_title="Directrice commerciale",
        phone="06 12 34 56 78",
        postcode="69003",
    )
    store_submissions(engine, row)
    report = run(engine, settings, catalog, setup)
    assert report.statuses == {"hot": 1}
    assert report.notified.sent == {"email": 1, "sms": 1}, report.notified
    with engine.connect() as conn:
        lead = lead_by_email(conn, "claire@negoce-lyon.fr")
        assert lead["owner"] == "bruno"  # Lyon is in Bruno's territory
        tasks = conn.execute(select(TASKS)).mappings().all()
        assert [(t["owner"], t["kind"], t["step_id"]) for t in tasks] == [("bruno", "call", "call-1")]
        assert live_sequences(conn, lead["id"]) == ["sales-cadence"]
    emails = outbox_emails(settings)
    assert len(emails) == 1 and "bruno.lefevre@spirale.example" in emails[0]
    # Running again processes nothing and notifies nobody twice.
    again = run(engine, settings, catalog, setup)
    assert again.processed == 0 and len(outbox_emails(settings)) == 1


def test_an_invalid_address_or_unknown_form_is_rejected_with_the_error(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup
) -> None:
    store_submissions(
        engine, submission("livre-blanc", "not-an-address"), submission("nope", "a@b-company.fr")
    )
    report = run(engine, settings, catalog, setup)
    assert report.rejected == 2 and report.processed == 0
    with engine.connect() as conn:
        rows = conn.execute(select(SUBMISSIONS.c.form_id, SUBMISSIONS.c.status, SUBMISSIONS.c.error)).all()
    errors = {form: (status, error) for form, status, error in rows}
    assert errors["livre-blanc"][0] == "rejected" and "invalid email address" in errors["livre-blanc"][1]
    assert errors["nope"][0] == "rejected" and "unknown form 'nope'" in errors["nope"][1]


def test_a_second_download_updates_the_lead_and_adds_engagement_once(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup
) -> None:
    store_submissions(engine, submission("livre-blanc", "Marc@Industrie-Sud.fr"))
    run(engine, settings, catalog, setup)
    store_submissions(engine, submission("checklist-rgpd", "marc@industrie-sud.fr", job_title="Gérant"))
    run(engine, settings, catalog, setup)
    with engine.connect() as conn:
        lead = lead_by_email(conn, "marc@industrie-sud.fr")
        assert lead["job_title"] == "Gérant" and lead["fit_score"] == 40  # Gérant 30 + France 10
        assert lead["engagement_score"] == pytest.approx(20)
        events = conn.execute(select(func.count()).select_from(EVENTS)).scalar_one()
        assert events == 2
        assert live_sequences(conn, lead["id"]) == ["whitepaper-nurture"]


def test_concurrent_runs_process_each_submission_once(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup
) -> None:
    # 20 people, each downloading twice: concurrent workers must still make one lead of each.
    rows = [
        submission("livre-blanc", f"contact{i % 20}@pme{i % 20}.fr", job_title="Gérant") for i in range(40)
    ]
    store_submissions(engine, *rows)
    totals: list[int] = []

    def worker() -> None:
        # One catalog per worker, as each worker process has its own.
        own = SequenceCatalog.open(SEQUENCES_DIR)
        report = process_submissions(
            engine, now=MONDAY_10H, settings=settings, catalog=own, setup=setup, limit=7
        )
        totals.append(report.processed)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while (extra := run(engine, settings, catalog, setup).processed) > 0:
        totals.append(extra)
    assert sum(totals) == 40
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(EVENTS)).scalar_one() == 40
        ledger = conn.execute(
            select(func.count()).select_from(LEDGER).where(LEDGER.c.kind == "engagement")
        ).scalar_one()
        assert ledger == 40
        assert conn.execute(select(func.count()).select_from(LEADS)).scalar_one() == 20
        assert conn.execute(select(func.count()).select_from(ENROLLMENTS)).scalar_one() == 20
