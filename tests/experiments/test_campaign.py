"""A simulated reactivation campaign on the real database: thousands of synthetic leads with known
true conversion rates, enrolled by ``run_reactivation``, sent by the real ``Dispatcher`` (recording
channels) under a moving clock, conversions recorded as time passes from the true rates with a
seeded generator. The review must pick the truly better offer, and the holdout must measure the
true lift within its interval. A second run later keeps every lead in its arm."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from models.tables import VariantAssignment
from scoring.ab_report import build_review
from scoring.conversions import record_conversion
from scoring.promotion import promote
from scoring.reactivation import run_reactivation
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from tests.experiments.conftest import OUTBOX, T0, MakeLeads, add_events, event_row

pytestmark = pytest.mark.db
ASSIGNMENTS = VariantAssignment.__table__  # type: ignore[attr-defined]
TRUE_RATES = {"holdout": 0.04, "audit-offert": 0.07, "remise": 0.11}
CLICK_RATES = {"audit-offert": 0.05, "remise": 0.08}
LEADS = 3000
TICK = timedelta(hours=12)
DAY = timedelta(days=1)


@dataclass
class Campaign:
    """The simulated world: what will happen to each lead, released as the clock passes it."""

    engine: Engine
    rng: random.Random  # conversions, drawn in lead order
    click_rng: random.Random = field(default_factory=lambda: random.Random(1))
    pending: list[tuple[datetime, str, dict[str, Any]]] = field(default_factory=list)
    in_window: Counter[str] = field(default_factory=Counter)
    observed_until: datetime = T0 - DAY

    def observe(self, now: datetime) -> None:
        """Plan the outcomes of the leads assigned and the messages sent since the last tick."""
        since, self.observed_until = self.observed_until, now
        with self.engine.connect() as conn:
            assigned = conn.execute(
                select(ASSIGNMENTS.c.lead_id, ASSIGNMENTS.c.variant, ASSIGNMENTS.c.assigned_at)
                .where(ASSIGNMENTS.c.step_id == "offer", ASSIGNMENTS.c.assigned_at > since)
                .order_by(ASSIGNMENTS.c.lead_id)
            ).all()
            sent = conn.execute(
                select(OUTBOX.c.id, OUTBOX.c.lead_id, OUTBOX.c.variant, OUTBOX.c.sent_at)
                .where(OUTBOX.c.state == "sent", OUTBOX.c.sent_at > since)
                .order_by(OUTBOX.c.lead_id, OUTBOX.c.step_id)
            ).all()
        for lead_id, arm, at in assigned:
            self._plan_conversion(lead_id, arm, at)
        for outbox_id, lead_id, arm, at in sent:
            self.pending.append(
                (at + timedelta(minutes=1), "delivered", {"lead": lead_id, "outbox": outbox_id})
            )
            if self.click_rng.random() < CLICK_RATES.get(arm, 0.0):
                self.pending.append(
                    (at + timedelta(hours=2), "click", {"lead": lead_id, "outbox": outbox_id})
                )

    def _plan_conversion(self, lead_id: uuid.UUID, arm: str, assigned_at: datetime) -> None:
        # The offer is sent in the tick that assigns the arm, so the send and the assignment coincide.
        if self.rng.random() < TRUE_RATES[arm]:
            at = assigned_at + timedelta(days=self.rng.uniform(0.5, 28))
            self.in_window[arm] += 1
        elif self.rng.random() < 0.03:
            at = assigned_at + timedelta(days=self.rng.uniform(31, 45))  # too late to be attributed
        else:
            return
        self.pending.append(
            (at, "converted", {"lead": lead_id, "value": round(self.rng.uniform(90, 400), 2)})
        )

    def release(self, now: datetime) -> None:
        """Record every planned event whose instant has come."""
        due = sorted((item for item in self.pending if item[0] <= now), key=lambda item: item[0])
        self.pending = [item for item in self.pending if item[0] > now]
        events = [
            event_row(kind, data["lead"], at, outbox_id=data["outbox"])
            for at, kind, data in due
            if kind != "converted"
        ]
        add_events(self.engine, events)
        with self.engine.begin() as conn:
            for at, kind, data in due:
                if kind == "converted":
                    record_conversion(
                        conn, lead_id=data["lead"], occurred_at=at, value=data["value"], source="shop"
                    )


def run_clock(dispatcher: Dispatcher, campaign: Campaign, start: datetime, end: datetime) -> datetime:
    now = start
    while now <= end:
        campaign.release(now)
        dispatcher.dispatch_due(now=now)
        campaign.observe(now)
        now += TICK
    return now


def test_the_review_picks_the_truly_better_offer_and_measures_the_true_lift(
    engine: Engine, catalog: SequenceCatalog, dispatcher: Dispatcher, make_leads: MakeLeads
) -> None:
    rng = random.Random(20261207)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(LEADS)]
    make_leads(ids=ids)
    make_leads(40, last_engaged_at=T0 - 10 * DAY)  # engaged recently: not selected
    make_leads(25, disqualified_reason="student")
    selection = run_reactivation(engine, now=T0, catalog=catalog, sequence_name="reactivation-offer")
    assert (len(selection.selected), selection.enrolled) == (LEADS, LEADS)
    assert selection.excluded == {"disqualified": 25}

    campaign = Campaign(engine, rng)
    run_clock(dispatcher, campaign, T0, T0 + 20 * DAY)
    campaign.release(T0 + 60 * DAY)
    review = build_review(engine, experiment="reactivation-offer", now=T0 + 60 * DAY, catalog=catalog)

    measured = {o.arm: o for o in review.outcomes}
    assert sum(o.recipients for o in measured.values()) == LEADS
    assert 0.08 < measured["holdout"].recipients / LEADS < 0.12
    assert {arm: o.conversions for arm, o in measured.items()} == {
        arm: campaign.in_window[arm] for arm in TRUE_RATES
    }
    assert review.open_windows == 0
    assert measured["holdout"].sent == 0 and measured["holdout"].clicks == 0
    assert measured["remise"].delivered == measured["remise"].recipients

    stats = review.stats
    assert stats.guard.enough_data
    assert stats.winner == "remise"
    assert stats.recommendation.startswith("Promote 'remise'")
    holdout = stats.control
    assert holdout.ci[0] <= TRUE_RATES["holdout"] <= holdout.ci[1]
    for arm in ("remise", "audit-offert"):
        low, high = stats.arm(arm).lift_abs_ci or (1.0, -1.0)
        assert low <= TRUE_RATES[arm] - TRUE_RATES["holdout"] <= high, arm
    assert stats.arm("remise").prob_beat_holdout > 0.99  # type: ignore[operator]


def test_assignments_stay_sticky_when_the_campaign_runs_again(
    engine: Engine, catalog: SequenceCatalog, dispatcher: Dispatcher, make_leads: MakeLeads
) -> None:
    leads = make_leads(300)
    run_reactivation(engine, now=T0, catalog=catalog, sequence_name="reactivation-offer")
    campaign = Campaign(engine, random.Random(7))
    run_clock(dispatcher, campaign, T0, T0 + 20 * DAY)
    with engine.connect() as conn:
        first = dict(
            conn.execute(
                select(ASSIGNMENTS.c.lead_id, ASSIGNMENTS.c.variant).where(ASSIGNMENTS.c.step_id == "offer")
            ).all()
        )
    assert set(first) == set(leads)
    with engine.begin() as conn:
        promote(
            conn,
            sequence="reactivation-offer",
            step="offer",
            variant="remise",
            actor="lea",
            reason="test",
            now=T0 + 30 * DAY,
        )

    rerun = T0 + 63 * DAY  # a Monday morning, weeks after the last message
    again = run_reactivation(engine, now=rerun, catalog=catalog, sequence_name="reactivation-offer")
    assert again.enrolled == 300
    dispatcher.dispatch_due(now=rerun)

    with engine.connect() as conn:
        second = dict(
            conn.execute(
                select(ASSIGNMENTS.c.lead_id, ASSIGNMENTS.c.variant).where(ASSIGNMENTS.c.step_id == "offer")
            ).all()
        )
        resent = conn.execute(
            select(OUTBOX.c.lead_id, OUTBOX.c.variant).where(
                OUTBOX.c.step_id == "offer", OUTBOX.c.created_at == rerun
            )
        ).all()
    assert second == first
    held = {lead for lead, arm in first.items() if arm == "holdout"}
    assert resent and all(first[lead] == arm for lead, arm in resent)
    assert held and held.isdisjoint(lead for lead, _ in resent)
    assert len(resent) == len(leads) - len(held)
