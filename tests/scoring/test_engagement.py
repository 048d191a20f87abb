"""Event-driven scoring on the database: ledger rows, idempotence, decay between events, moves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from scoring.engagement import apply_event_scores
from scoring.ledger import explain, totals
from scoring.rules import ScoringRules
from tests.scoring.conftest import MakeLead
from tests.scoring.helpers import EVENTS, LEADS, LEDGER, MONDAY_10H, event_row

pytestmark = pytest.mark.db


def test_events_are_scored_once_and_faded_between_them(
    engine: Engine, rules: ScoringRules, make_lead: MakeLead
) -> None:
    lead_id = make_lead(fit_score=60.0, status="warm")
    first = event_row(lead_id, "click", MONDAY_10H)
    second = event_row(lead_id, "reply", MONDAY_10H + timedelta(days=30))
    with engine.begin() as conn:
        conn.execute(EVENTS.insert(), [first, second])
        moves = apply_event_scores(conn, events=[first], now=MONDAY_10H, rules=rules)
        assert moves == []
        # 5 points a half-life ago are 2.5 now; the reply adds 20: 22.5, below A's hot threshold (30).
        moves = apply_event_scores(conn, events=[second, first], now=second["occurred_at"], rules=rules)
        assert moves == []
        lead = conn.execute(select(LEADS).where(LEADS.c.id == lead_id)).mappings().one()
        assert lead["engagement_score"] == pytest.approx(22.5)
        assert lead["engagement_at"] == second["occurred_at"]
        assert lead["last_engaged_at"] == second["occurred_at"]
        rules_written = conn.execute(select(LEDGER.c.rule).where(LEDGER.c.lead_id == lead_id)).scalars().all()
        assert sorted(rules_written) == ["engagement.click", "engagement.reply"]


def test_a_lead_turns_hot_with_a_status_move_and_its_reason(
    engine: Engine, rules: ScoringRules, make_lead: MakeLead
) -> None:
    lead_id = make_lead(fit_score=60.0, status="warm", engagement_score=10.0, engagement_at=MONDAY_10H)
    pricing = event_row(lead_id, "pricing_page", MONDAY_10H)
    with engine.begin() as conn:
        conn.execute(EVENTS.insert(), [pricing])
        moves = apply_event_scores(conn, events=[pricing], now=MONDAY_10H, rules=rules)
        assert [(m.old, m.new, m.reason) for m in moves] == [
            ("warm", "hot", "fit 60 (A), engagement 30.0 after pricing_page")
        ]
        assert conn.execute(select(LEADS.c.status).where(LEADS.c.id == lead_id)).scalar_one() == "hot"
        status_rows = conn.execute(select(LEDGER.c.detail).where(LEDGER.c.kind == "status")).scalars().all()
        assert status_rows == ["warm -> hot: fit 60 (A), engagement 30.0 after pricing_page"]


def test_opens_do_not_count_as_contact_initiated_by_the_lead_and_negatives_cool_it(
    engine: Engine, rules: ScoringRules, make_lead: MakeLead
) -> None:
    lead_id = make_lead(fit_score=60.0, status="warm")
    opened = event_row(lead_id, "open", MONDAY_10H)
    unsubscribed = event_row(lead_id, "unsubscribe", MONDAY_10H + timedelta(hours=1))
    delivered = event_row(lead_id, "delivered", MONDAY_10H)  # worth nothing: no ledger row
    with engine.begin() as conn:
        conn.execute(EVENTS.insert(), [opened, unsubscribed, delivered])
        moves = apply_event_scores(conn, events=[opened, delivered], now=MONDAY_10H, rules=rules)
        assert conn.execute(select(LEADS.c.last_engaged_at).where(LEADS.c.id == lead_id)).scalar_one() is None
        moves = apply_event_scores(conn, events=[unsubscribed], now=unsubscribed["occurred_at"], rules=rules)
        assert [(m.old, m.new) for m in moves] == [("warm", "cold")]
        explained = explain(
            conn, lead_id=lead_id, now=MONDAY_10H + timedelta(days=30), half_life=rules.engagement.half_life
        )
        stored = conn.execute(
            select(LEADS.c.engagement_score, LEADS.c.engagement_at).where(LEADS.c.id == lead_id)
        ).one()
    # The ledger explains the stored score at any instant: (1 - 50) faded over ~a half-life.
    _, engagement = totals(explained)
    assert engagement == pytest.approx(
        stored[0] * 0.5 ** ((MONDAY_10H + timedelta(days=30) - stored[1]) / timedelta(days=30))
    )
    assert engagement == pytest.approx(-24.5, abs=0.05)


def test_a_form_download_can_be_worth_more_for_one_form(
    engine: Engine, rules: ScoringRules, make_lead: MakeLead
) -> None:
    lead_id = make_lead(fit_score=40.0, status="cold")
    callback = event_row(lead_id, "form_submitted", MONDAY_10H, form_id="demande-rappel")
    with engine.begin() as conn:
        conn.execute(EVENTS.insert(), [callback])
        moves = apply_event_scores(conn, events=[callback], now=MONDAY_10H, rules=rules)
        assert [(m.old, m.new) for m in moves] == [("cold", "hot")]  # B needs 45: a callback is worth 50
        assert conn.execute(select(LEDGER.c.rule).where(LEDGER.c.kind == "engagement")).scalar_one() == (
            "engagement.form.demande-rappel"
        )
