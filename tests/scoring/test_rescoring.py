"""Nightly rescoring on the database: decay to now, moves counted per (from, to), routing, the
sales cadence holding its leads, customers becoming former customers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from scoring.decay import decayed, decayed_sql
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
    quiet = make_lead(fit_score=10.0, status="cold")  # nothing to decay, no move
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
        # Nothing is rewritten to restate a decay: the stored value at its instant stays exact.
        stored = {
            row[0]: tuple(row[1:])
            for row in conn.execute(select(LEADS.c.id, LEADS.c.engagement_score, LEADS.c.engagement_at))
        }
        assert stored[cooling] == (40.0, at) and stored[excluded] == (50.0, at)
        statuses = dict(conn.execute(select(LEADS.c.id, LEADS.c.status)).all())
        assert statuses[cooling] == "warm" and statuses[fading] == "cold" and statuses[steady] == "warm"
        assert statuses[quiet] == "cold"
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


def test_sql_decay_is_the_python_decay(engine: Engine, rules: ScoringRules, make_lead: MakeLead) -> None:
    ages = (0.0, 0.5, 15.0, 30.0, 47.3, 400.0)
    leads = {make_lead(engagement_score=37.5, engagement_at=NIGHT - timedelta(days=d)): d for d in ages}
    leads[
        make_lead(engagement_score=-12.0, engagement_at=NIGHT + timedelta(days=2))
    ] = -2.0  # from the future
    leads[make_lead(engagement_score=0.0005, engagement_at=NIGHT - timedelta(days=1))] = 1.0  # negligible
    with engine.connect() as conn:
        expression = decayed_sql(
            LEADS.c.engagement_score,
            LEADS.c.engagement_at,
            NIGHT,
            rules.engagement.half_life,
            conn.dialect.name,
        )
        rows = conn.execute(
            select(LEADS.c.id, LEADS.c.engagement_score, LEADS.c.engagement_at, expression)
        ).all()
    assert len(rows) == len(leads)
    for _, score, at, in_sql in rows:
        expected = 0.0 if abs(score) < 1e-3 else decayed(score, at, NIGHT, rules.engagement.half_life)
        assert in_sql == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_a_move_is_not_written_over_an_event_scored_since_the_read(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    lead_id = make_lead(fit_score=40.0, status="warm", engagement_score=12.0, engagement_at=MONDAY_10H)
    from scoring.rescoring import RescoreReport, _Rescorer
    from scoring.routing import Router

    report = RescoreReport()
    rescorer = _Rescorer(
        now=NIGHT, rules=rules, router=Router(rules=rules, catalog=catalog, team=team), report=report
    )
    with engine.connect() as conn:
        _, moves = rescorer.read(conn, after=None, size=10)
    assert [(m.move.old, m.move.new) for m in moves] == [("warm", "cold")]
    with engine.begin() as conn:  # a click is scored meanwhile
        conn.execute(LEADS.update().values(engagement_score=14.0, engagement_at=NIGHT - timedelta(hours=1)))
    with engine.begin() as conn:
        rescorer.write(conn, moves)
    assert report.skipped == 1 and report.moves == {}
    with engine.connect() as conn:
        assert conn.execute(select(LEADS.c.status).where(LEADS.c.id == lead_id)).scalar_one() == "warm"


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
