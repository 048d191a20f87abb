"""Per-arm outcomes of an experiment, measured from real dispatches and events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from models.tables import VariantAssignment
from scoring.experiments import ArmOutcome, experiments_in, measure, resolve_experiment
from sequences.catalog import SequenceCatalog
from sequences.schema import Sequence
from spirale.dispatch import Dispatcher
from spirale.enrollment import enroll_leads
from spirale.errors import SequenceError
from tests.experiments.conftest import OUTBOX, T0, MakeLeads, add_events, event_row

DAY = timedelta(days=1)
ASSIGNMENTS = VariantAssignment.__table__  # type: ignore[attr-defined]


def test_an_offer_and_its_reminders_are_one_experiment(catalog: SequenceCatalog) -> None:
    (experiment,) = experiments_in(catalog.get("reactivation-offer"))
    assert experiment.name == "reactivation-offer/offer"
    assert experiment.arms == ("remise", "audit-offert", "holdout")
    assert experiment.steps == ("offer", "reminder", "last-call-sms")
    assert experiment.key == "ab-reactivation-offer-offer"
    assert resolve_experiment("reactivation-offer", catalog) == experiment
    assert resolve_experiment("reactivation-offer/reminder", catalog) == experiment


def test_unknown_experiments_are_explained(catalog: SequenceCatalog) -> None:
    with pytest.raises(SequenceError, match="'incubator' has no step with variants"):
        resolve_experiment("incubator", catalog)
    with pytest.raises(SequenceError, match="step 'nope' of 'reactivation-offer' is not an experiment"):
        resolve_experiment("reactivation-offer/nope", catalog)
    two = Sequence.model_validate(
        {
            "name": "two-tests",
            "steps": [
                {
                    "id": "a",
                    "channel": "sms",
                    "variants": [
                        {"id": "x", "weight": 50, "text": "x STOP"},
                        {"id": "y", "weight": 50, "text": "y STOP"},
                    ],
                },
                {"id": "b", "channel": "sms", "variants": [{"id": "z", "weight": 100, "text": "z STOP"}]},
            ],
        }
    )
    catalog.add(two, "v1")
    with pytest.raises(SequenceError, match="runs several experiments: name one of two-tests/a, two-tests/b"):
        resolve_experiment("two-tests", catalog)


@pytest.mark.db
def test_the_funnel_counts_distinct_leads_inside_the_attribution_window(
    engine: Engine, catalog: SequenceCatalog, dispatcher: Dispatcher, make_leads: MakeLeads
) -> None:
    leads = make_leads(60)
    sequence = catalog.get("reactivation-offer")
    with engine.begin() as conn:
        enroll_leads(conn, lead_ids=leads, sequence=sequence, version="v1", now=T0)
    dispatcher.dispatch_due(now=T0)
    with engine.connect() as conn:
        arms = dict(conn.execute(select(ASSIGNMENTS.c.lead_id, ASSIGNMENTS.c.variant)).all())
        sends = {
            lead: (oid, at)
            for oid, lead, at in conn.execute(select(OUTBOX.c.id, OUTBOX.c.lead_id, OUTBOX.c.sent_at))
        }
    held = [lead for lead in leads if arms[lead] == "holdout"]
    treated = [lead for lead in leads if arms[lead] != "holdout"]
    assert held and len(treated) == len(sends)
    first, second, third = treated[0], treated[1], treated[2]
    events = []
    for lead in treated:
        events.append(event_row("delivered", lead, T0, outbox_id=sends[lead][0]))
    events += [
        event_row("open", first, T0 + DAY, outbox_id=sends[first][0]),
        event_row("open", first, T0 + 2 * DAY, outbox_id=sends[first][0]),  # a second open: still one lead
        event_row("click", first, T0 + DAY, outbox_id=sends[first][0]),
        event_row("reply", second, T0 + 3 * DAY),
        event_row("meeting_booked", second, T0 + 4 * DAY),
        event_row("converted", first, T0 + 10 * DAY, value=100.0),
        event_row("converted", first, T0 + 12 * DAY, value=50.0),  # one converted lead, two purchases
        event_row("converted", second, T0 + 31 * DAY, value=999.0),  # after the 30-day window
        event_row("converted", third, T0 - DAY, value=999.0),  # before the send
        event_row(
            "converted", held[0], T0 + 29 * DAY, value=70.0
        ),  # the holdout's window starts at assignment
    ]
    add_events(engine, events)

    with engine.connect() as conn:
        outcomes = {
            o.arm: o
            for o in measure(
                conn, experiment=resolve_experiment("reactivation-offer", catalog), now=T0 + 40 * DAY
            )
        }

    assert list(outcomes) == ["remise", "audit-offert", "holdout"]
    expected = {arm: ArmOutcome(arm) for arm in ("remise", "audit-offert")}
    for lead in treated:
        expected[arms[lead]].recipients += 1
        expected[arms[lead]].sent += 1
        expected[arms[lead]].delivered += 1
    expected[arms[first]].opens += 1
    expected[arms[first]].clicks += 1
    expected[arms[first]].conversions += 1
    expected[arms[first]].revenue += 150.0
    expected[arms[second]].replies += 1
    expected[arms[second]].meetings += 1
    assert outcomes["remise"] == expected["remise"]
    assert outcomes["audit-offert"] == expected["audit-offert"]
    assert outcomes["holdout"] == ArmOutcome("holdout", recipients=len(held), conversions=1, revenue=70.0)


@pytest.mark.db
def test_windows_still_open_are_counted(
    engine: Engine, catalog: SequenceCatalog, dispatcher: Dispatcher, make_leads: MakeLeads
) -> None:
    leads = make_leads(10)
    with engine.begin() as conn:
        enroll_leads(conn, lead_ids=leads, sequence=catalog.get("reactivation-offer"), version="v1", now=T0)
    dispatcher.dispatch_due(now=T0)
    experiment = resolve_experiment("reactivation-offer", catalog)
    with engine.connect() as conn:
        during = measure(conn, experiment=experiment, now=T0 + 29 * DAY)
        after = measure(conn, experiment=experiment, now=T0 + 31 * DAY)
        short = measure(conn, experiment=experiment, now=T0 + 29 * DAY, window=timedelta(days=7))
    assert sum(o.open_windows for o in during) == 10
    assert sum(o.open_windows for o in after) == 0 == sum(o.open_windows for o in short)


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric 'revenue'"):
        ArmOutcome("x").count("revenue")
