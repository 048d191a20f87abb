"""Nightly rescoring on the database: decay to now, moves counted per (from, to), routing, the
sales cadence holding its leads, customers becoming former customers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from scoring.ledger import explain
from scoring.rescoring import rescore_all
from scoring.routing import route_moves
from scoring.rules import ScoringRules
from scoring.status import StatusMove
from scoring.team import Team
from sequences.catalog import SequenceCatalog
from tests.scoring.conftest import MakeLead
from tests.scoring.helpers import ENROLLMENTS, LEADS, MONDAY_10H, live_sequences

pytestmark = pytest.mark.db
NIGHT = MONDAY_10H + timedelta(days=15)  # half a half-life later: engagement x 0.7071


def test_decay_moves_leads_down_and_routes_them(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    at = MONDAY_10H
    cooling = make_lead(
        fit_score=60.0, status="hot", engagement_score=40.0, engagement_at=at
    )  # -> 28.3: warm
    steady = make_lead(
        fit_score=60.0, status="warm", engagement_score=20.0, engagement_at=at
    )  # -> 14.1: warm
    fading = make_lead(fit_score=40.0, status="warm", engagement_score=12.0, engagement_at=at)  # -> 8.5: cold
    quiet = make_lead(fit_score=10.0, status="cold")  # nothing to decay
    excluded = make_lead(fit_score=60.0, status="disqualified", engagement_score=50.0, engagement_at=at)
    with engine.begin() as conn:
        route_moves(
            conn,
            moves=[StatusMove(fading, None, "warm", "test")],
            now=at,
            rules=rules,
            catalog=catalog,
            team=team,
        )
    report = rescore_all(engine, now=NIGHT, rules=rules, catalog=catalog, batch=2, team=team)

    assert report.scanned == 4 and report.batches == 2
    assert sorted(report.rows(), key=str) == [
        {"from": "hot", "to": "warm", "leads": 1},
        {"from": "warm", "to": "cold", "leads": 1},
    ]
    with engine.connect() as conn:
        scores = dict(conn.execute(select(LEADS.c.id, LEADS.c.engagement_score)).all())
        assert scores[cooling] == pytest.approx(40 / 2**0.5)
        assert scores[steady] == pytest.approx(20 / 2**0.5)
        assert scores[quiet] == 0 and scores[excluded] == 50
        statuses = dict(conn.execute(select(LEADS.c.id, LEADS.c.status)).all())
        assert statuses[cooling] == "warm" and statuses[fading] == "cold" and statuses[steady] == "warm"
        assert live_sequences(conn, fading) == ["incubator"]
        assert live_sequences(conn, cooling) == ["whitepaper-nurture"]
        exit_reason = conn.execute(
            select(ENROLLMENTS.c.exit_reason).where(
                ENROLLMENTS.c.lead_id == fading, ENROLLMENTS.c.state == "exited"
            )
        ).scalar_one()
        assert exit_reason == "moved to incubator"
        decay_rows = explain(conn, lead_id=cooling, now=NIGHT, half_life=rules.engagement.half_life)
    assert [(r.kind, r.rule, r.points) for r in decay_rows] == [("status", "status.warm", 0.0)]
    assert decay_rows[0].detail == "hot -> warm: fit 60 (A), engagement 28.3 (decay)"

    again = rescore_all(engine, now=NIGHT, rules=rules, catalog=catalog, team=team)
    assert again.moves == {} and again.scanned == 4


def test_a_lead_in_the_sales_cadence_is_not_demoted_before_it_ends(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    lead_id = make_lead(fit_score=60.0, status="hot", engagement_score=31.0, engagement_at=MONDAY_10H)
    with engine.begin() as conn:
        routed = route_moves(
            conn,
            moves=[StatusMove(lead_id, "warm", "hot", "test")],
            now=MONDAY_10H,
            rules=rules,
            catalog=catalog,
            team=team,
        )
    assert len(routed.task_ids) == 1
    report = rescore_all(engine, now=NIGHT, rules=rules, catalog=catalog, team=team)
    assert report.moves == {}
    with engine.connect() as conn:
        assert conn.execute(select(LEADS.c.status).where(LEADS.c.id == lead_id)).scalar_one() == "hot"
        assert live_sequences(conn, lead_id) == ["sales-cadence"]


def test_an_inactive_customer_becomes_a_former_customer(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    recent = make_lead(status="customer", customer_class="A", last_purchase_at=NIGHT - timedelta(days=100))
    dormant = make_lead(status="customer", customer_class="B", last_purchase_at=NIGHT - timedelta(days=400))
    with engine.begin() as conn:
        moves = [StatusMove(recent, None, "customer", "test"), StatusMove(dormant, None, "customer", "test")]
        route_moves(conn, moves=moves, now=MONDAY_10H, rules=rules, catalog=catalog, team=team)
        assert live_sequences(conn, recent) == ["customer-care"]
        assert live_sequences(conn, dormant) == ["customer-care-b"]
    report = rescore_all(engine, now=NIGHT, rules=rules, catalog=catalog, team=team)
    assert report.rows() == [{"from": "customer", "to": "former_customer", "leads": 1}]
    with engine.connect() as conn:
        assert (
            conn.execute(select(LEADS.c.status).where(LEADS.c.id == dormant)).scalar_one()
            == "former_customer"
        )
        assert live_sequences(conn, dormant) == []  # a candidate for reactivation, off the care policy
        assert live_sequences(conn, recent) == ["customer-care"]
