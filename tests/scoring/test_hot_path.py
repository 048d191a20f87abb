"""The hot path end to end on the real database: a form download -> warm -> engagement makes it hot
-> a task on the right owner's list at once + one notification -> seven attempts run by the real
dispatcher on a moving clock, outcomes logged -> back to marketing. And a reply ends the cadence."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from channels.registry import build_channels
from scoring.cadence import hand_back_completed, record_outcome
from scoring.engagement import apply_event_scores
from scoring.ledger import explain, totals
from scoring.notify import notify_tasks
from scoring.routing import route_moves
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.intake import IntakeSetup, process_submissions
from spirale.settings import Settings
from tests.scoring.helpers import (
    ENROLLMENTS,
    EVENTS,
    MONDAY_10H,
    SEQUENCES_DIR,
    TASKS,
    event_row,
    lead_by_email,
    live_sequences,
    make_settings,
    outbox_emails,
    outbox_sms,
    store_submissions,
    submission,
)

pytestmark = pytest.mark.db
EMAIL = "claire.dupont@negoce-lyon.fr"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def catalog() -> SequenceCatalog:
    return SequenceCatalog.open(SEQUENCES_DIR)


@pytest.fixture(scope="module")
def setup() -> IntakeSetup:
    return IntakeSetup.load(SEQUENCES_DIR)


def warm_lead(engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup) -> uuid.UUID:
    row = submission(
        "livre-blanc",
        EMAIL,
        first_name="Claire",
        last_name="Dupont",
        company="Négoce Lyon",
        job_title="Directrice commerciale",
        company_size=40,
        phone="06 12 34 56 78",
        postcode="69003",
        consent_email=True,
        consent_sms=True,
    )
    store_submissions(engine, row)
    report = process_submissions(engine, now=MONDAY_10H, settings=settings, catalog=catalog, setup=setup)
    assert report.statuses == {"warm": 1}
    lead_id: uuid.UUID = row["lead_id"]
    return lead_id


def turn_hot(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup, lead_id: uuid.UUID
) -> list[uuid.UUID]:
    """What the event processor does with new events: score, route, notify."""
    at = MONDAY_10H + timedelta(minutes=30)
    events = [event_row(lead_id, "click", at), event_row(lead_id, "pricing_page", at)]
    with engine.begin() as conn:
        conn.execute(EVENTS.insert(), events)
        moves = apply_event_scores(conn, events=events, now=at, rules=setup.rules)
        assert [(m.old, m.new) for m in moves] == [("warm", "hot")]
        routed = route_moves(conn, moves=moves, now=at, rules=setup.rules, catalog=catalog, team=setup.team)
    notify_tasks(
        engine, task_ids=routed.task_ids, now=at, settings=settings, rules=setup.rules, team=setup.team
    )
    return routed.task_ids


def test_an_engaged_prospect_reaches_sales_then_goes_back_to_nurture_after_seven_attempts(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup
) -> None:
    lead_id = warm_lead(engine, settings, catalog, setup)
    with engine.connect() as conn:
        assert live_sequences(conn, lead_id) == ["whitepaper-nurture"]
    task_ids = turn_hot(engine, settings, catalog, setup, lead_id)

    # The moment it turns hot: a task on Bruno's list (Lyon), one email and one SMS to Bruno.
    with engine.connect() as conn:
        tasks = conn.execute(select(TASKS)).mappings().all()
        assert [(t["id"], t["owner"], t["kind"], t["state"]) for t in tasks] == [
            (task_ids[0], "bruno", "call", "open")
        ]
        assert live_sequences(conn, lead_id) == ["sales-cadence"]
        nurture_exit = conn.execute(
            select(ENROLLMENTS.c.exit_reason).where(ENROLLMENTS.c.sequence_name == "whitepaper-nurture")
        ).scalar_one()
        assert nurture_exit == "moved to sales-cadence"
    assert [m["to"] for m in outbox_sms(settings)] == ["+33612345602"]
    assert sum("bruno.lefevre@spirale.example" in e for e in outbox_emails(settings)) == 1

    # Seven attempts: the dispatcher runs the cadence, Bruno logs every manual attempt.
    channels = {str(kind): channel for kind, channel in build_channels(settings).items()}
    dispatcher = Dispatcher(engine=engine, catalog=catalog, channels=channels, settings=settings)
    now, logged = MONDAY_10H + timedelta(hours=1), 0
    while now < MONDAY_10H + timedelta(days=30):
        dispatcher.dispatch_due(now=now)
        logged += log_open_tasks(engine, now, "no-answer")
        now += timedelta(hours=2)
    with engine.connect() as conn:
        cadence = (
            conn.execute(select(ENROLLMENTS).where(ENROLLMENTS.c.sequence_name == "sales-cadence"))
            .mappings()
            .one()
        )
        assert cadence["state"] == "completed" and cadence["step_index"] == 7
        kinds = conn.execute(select(TASKS.c.kind).order_by(TASKS.c.created_at)).scalars().all()
    assert kinds == ["call", "linkedin", "call", "call"] and logged == 4
    prospect_mail = [e for e in outbox_emails(settings) if f"To: {EMAIL}" in e]
    assert len(prospect_mail) == 2  # email-1 and email-2 of the cadence
    assert len([m for m in outbox_sms(settings) if m["to"] == "+33612345678"]) == 1

    # Back to marketing: engagement reset, warm by its fit (A), nurture again.
    with engine.begin() as conn:
        assert hand_back_completed(conn, now=now, rules=setup.rules, catalog=catalog) == 1
    with engine.begin() as conn:
        assert hand_back_completed(conn, now=now, rules=setup.rules, catalog=catalog) == 0
    with engine.connect() as conn:
        lead = lead_by_email(conn, EMAIL)
        assert lead["status"] == "warm" and lead["engagement_score"] == 0 and lead["owner"] == "bruno"
        assert live_sequences(conn, lead_id) == ["whitepaper-nurture"]
        reason = conn.execute(
            select(ENROLLMENTS.c.exit_reason).where(ENROLLMENTS.c.sequence_name == "sales-cadence")
        ).scalar_one()
        assert reason == "handed back to whitepaper-nurture (all attempts without answer)"
        explained = explain(conn, lead_id=lead_id, now=now, half_life=setup.rules.engagement.half_life)
    fit, engagement = totals(explained)
    assert fit == pytest.approx(lead["fit_score"]) and engagement == pytest.approx(0, abs=1e-6)
    assert [r.rule for r in explained if r.kind == "status"] == ["status.warm", "status.hot", "status.warm"]


def log_open_tasks(engine: Engine, now: datetime, outcome: str) -> int:
    with engine.begin() as conn:
        open_ids = (
            conn.execute(select(TASKS.c.id).where(TASKS.c.state == "open", TASKS.c.due_at <= now))
            .scalars()
            .all()
        )
        for task_id in open_ids:
            record_outcome(conn, task_id=task_id, outcome=outcome, now=now, actor="bruno")
    return len(open_ids)


def test_a_reply_ends_the_cadence_and_sales_keeps_the_lead(
    engine: Engine, settings: Settings, catalog: SequenceCatalog, setup: IntakeSetup
) -> None:
    lead_id = warm_lead(engine, settings, catalog, setup)
    task_ids = turn_hot(engine, settings, catalog, setup, lead_id)
    now = MONDAY_10H + timedelta(hours=1)
    with engine.begin() as conn:
        result = record_outcome(conn, task_id=task_ids[0], outcome="reached", now=now, actor="bruno")
    assert result.cadence_ended and result.exit_reason == "reached"
    with engine.begin() as conn:  # idempotent for the same outcome
        assert record_outcome(conn, task_id=task_ids[0], outcome="reached", now=now, actor="bruno").already
    with engine.connect() as conn:
        assert live_sequences(conn, lead_id) == []
        reply = conn.execute(select(EVENTS).where(EVENTS.c.type == "reply")).mappings().one()
        assert reply["lead_id"] == lead_id and reply["payload"]["actor"] == "bruno"
    with engine.begin() as conn:
        moves = apply_event_scores(conn, events=[reply], now=now, rules=setup.rules)
        assert moves == [] and hand_back_completed(conn, now=now, rules=setup.rules, catalog=catalog) == 0
    with engine.connect() as conn:
        lead = lead_by_email(conn, EMAIL)
    assert lead["status"] == "hot" and lead["owner"] == "bruno"
