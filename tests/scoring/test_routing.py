"""Routing keeps a lead on one track: whatever the sequence of moves, a lead is live in at most one
of the exclusive sequences, the one its status calls for; a disqualified lead leaves them all."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from scoring.routing import route_moves, target_sequence
from scoring.rules import ScoringRules
from scoring.status import StatusMove
from scoring.team import Team
from sequences.catalog import SequenceCatalog
from spirale.enrollment import enroll_leads
from tests.scoring.conftest import MakeLead
from tests.scoring.helpers import ENROLLMENTS, LEADS, MONDAY_10H, TASKS, live_sequences

pytestmark = pytest.mark.db
STATUSES = ("hot", "warm", "cold", "customer", "former_customer")


def test_a_lead_is_never_live_in_two_exclusive_sequences(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    exclusive = rules.routing.exclusive_sequences()
    rng = random.Random(5)
    lead_id = make_lead(customer_class="B", fit_score=60.0)
    old: str | None = None
    for step in range(40):
        new = rng.choice(STATUSES)
        preferred = rng.choice((None, "incubator", "sales-cadence", "whitepaper-nurture"))
        now = MONDAY_10H + timedelta(hours=step)
        with engine.begin() as conn:
            conn.execute(LEADS.update().values(status=new))
            route_moves(
                conn,
                moves=[StatusMove(lead_id, old, new, "test", preferred)],
                now=now,
                rules=rules,
                catalog=catalog,
                team=team,
            )
            live = [name for name in live_sequences(conn, lead_id) if name in exclusive]
        expected = target_sequence(new, rules, customer_class="B", preferred=preferred)
        assert live == ([expected] if expected else []), (step, old, new, preferred)
        old = new
    with engine.connect() as conn:
        open_tasks = conn.execute(select(TASKS.c.id).where(TASKS.c.state == "open")).all()
        live_cadences = conn.execute(
            select(ENROLLMENTS.c.id).where(
                ENROLLMENTS.c.sequence_name == "sales-cadence", ENROLLMENTS.c.state == "active"
            )
        ).all()
    # Tasks of a cadence the lead left were cancelled with it.
    assert len(open_tasks) == len(live_cadences)


def test_disqualification_leaves_every_sequence(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    lead_id = make_lead(fit_score=60.0)
    with engine.begin() as conn:
        for name in ("whitepaper-nurture", "reactivation-offer"):
            enroll_leads(
                conn,
                lead_ids=[lead_id],
                sequence=catalog.get(name),
                version=catalog.version(name),
                now=MONDAY_10H,
            )
        conn.execute(
            LEADS.update().values(status="disqualified", disqualified_reason="competitor domain x.fr")
        )
        route_moves(
            conn,
            moves=[StatusMove(lead_id, "warm", "disqualified", "test")],
            now=MONDAY_10H,
            rules=rules,
            catalog=catalog,
            team=team,
        )
        assert live_sequences(conn, lead_id) == []
        reasons = set(conn.execute(select(ENROLLMENTS.c.exit_reason)).scalars())
    assert reasons == {"disqualified: competitor domain x.fr"}


def test_a_warm_lead_follows_its_forms_sequence_but_never_into_sales_without_being_hot(
    rules: ScoringRules,
) -> None:
    assert target_sequence("warm", rules, preferred="incubator") == "incubator"
    assert target_sequence("warm", rules, preferred="sales-cadence") == "whitepaper-nurture"
    assert target_sequence("hot", rules, preferred="incubator") == "sales-cadence"
    assert target_sequence("customer", rules, customer_class="C") == "customer-care-c"
    assert target_sequence("customer", rules, customer_class=None) is None
    assert target_sequence("former_customer", rules) is None
