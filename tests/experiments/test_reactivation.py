"""Who a reactivation run selects, who it screens out and why, and what it enrolls."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from models.suppressions import suppress
from scoring.reactivation import run_reactivation, screen_audience, select_audience
from sequences.audience import AudienceSpec
from sequences.catalog import SequenceCatalog
from spirale.enrollment import enroll_leads
from spirale.errors import SequenceError
from tests.experiments.conftest import ENROLLMENTS, T0, MakeLeads, add_events, add_sends, event_row

pytestmark = pytest.mark.db
DAY = timedelta(days=1)
SPEC = AudienceSpec(
    dormant_days=120,
    min_messages_without_click=3,
    former_customers_inactive_days=365,
    exclude_contacted_within_days=14,
)


def _reasons(engine: Engine, catalog: SequenceCatalog, spec: AudienceSpec = SPEC) -> dict[uuid.UUID, str]:
    with engine.connect() as conn:
        selected = select_audience(conn, sequence=catalog.get("reactivation-offer"), spec=spec, now=T0)
    return {s.lead_id: s.reason for s in selected}


def test_each_rule_selects_its_leads_with_the_reason(
    engine: Engine, catalog: SequenceCatalog, make_leads: MakeLeads
) -> None:
    (dormant,) = make_leads(last_engaged_at=T0 - 200 * DAY)
    (lively,) = make_leads(last_engaged_at=T0 - 30 * DAY)
    (never_engaged,) = make_leads(last_engaged_at=None, created_at=T0 - 130 * DAY)
    (ignores,) = make_leads(last_engaged_at=T0 - 30 * DAY, status="warm")
    add_sends(engine, ignores, [T0 - 60 * DAY, T0 - 45 * DAY, T0 - 30 * DAY])
    (clicked_late,) = make_leads(last_engaged_at=T0 - 30 * DAY)
    outbox = add_sends(engine, clicked_late, [T0 - 60 * DAY, T0 - 45 * DAY, T0 - 30 * DAY])
    add_events(engine, [event_row("click", clicked_late, T0 - 44 * DAY, outbox_id=outbox[1])])
    (clicked_early,) = make_leads(last_engaged_at=T0 - 30 * DAY)
    add_events(engine, [event_row("click", clicked_early, T0 - 90 * DAY)])
    add_sends(engine, clicked_early, [T0 - 60 * DAY, T0 - 45 * DAY, T0 - 30 * DAY])
    (too_fresh,) = make_leads(last_engaged_at=T0 - 30 * DAY)  # third message still inside no_click_days
    add_sends(engine, too_fresh, [T0 - 60 * DAY, T0 - 45 * DAY, T0 - 10 * DAY])
    (former,) = make_leads(status="former_customer", last_purchase_at=T0 - 400 * DAY)
    (loyal,) = make_leads(status="customer", last_purchase_at=T0 - 100 * DAY)

    reasons = _reasons(engine, catalog)

    assert reasons == {
        dormant: "dormant: no engagement for 200 days",
        never_engaged: "dormant: no engagement for 130 days",
        ignores: "non-clicker: 3 messages without a click",
        clicked_early: "non-clicker: 3 messages without a click",
        former: "former customer: no purchase for 400 days",
    }
    with engine.connect() as conn:
        screened = screen_audience(conn, sequence=catalog.get("reactivation-offer"), spec=SPEC, now=T0)
    # The others are not matched at all (rather than screened out): too_fresh has two messages old
    # enough, not three; clicked_late clicked after its second.
    assert screened.screened_out == {}
    assert {lively, clicked_late, too_fresh, loyal}.isdisjoint(reasons)


def test_a_lead_matching_two_rules_carries_both_reasons(
    engine: Engine, catalog: SequenceCatalog, make_leads: MakeLeads
) -> None:
    (lead,) = make_leads(last_engaged_at=T0 - 150 * DAY)
    add_sends(engine, lead, [T0 - 100 * DAY, T0 - 80 * DAY, T0 - 60 * DAY, T0 - 40 * DAY])
    assert _reasons(engine, catalog) == {
        lead: "dormant: no engagement for 150 days; non-clicker: 4 messages without a click"
    }


def test_screened_out_leads_are_counted_by_reason(
    engine: Engine, catalog: SequenceCatalog, make_leads: MakeLeads
) -> None:
    (kept,) = make_leads()
    (hot,) = make_leads(status="hot", last_engaged_at=T0 - 30 * DAY)
    add_sends(engine, hot, [T0 - 60 * DAY, T0 - 50 * DAY, T0 - 40 * DAY])
    (disqualified,) = make_leads(disqualified_reason="competitor")
    (contacted,) = make_leads()
    add_sends(engine, contacted, [T0 - 3 * DAY])
    (told_by_field,) = make_leads(last_contacted_at=T0 - 2 * DAY)
    (no_consent,) = make_leads(consent_email=False)
    (no_email,) = make_leads(email=None)
    (opted_out,) = make_leads(email="parti@example.fr")
    (live,) = make_leads()
    sequence = catalog.get("reactivation-offer")
    with engine.begin() as conn:
        suppress(
            conn, channel="email", address="Parti@example.fr", reason="unsubscribe", source="test", now=T0
        )
        enroll_leads(conn, lead_ids=[live], sequence=sequence, version="v1", now=T0 - DAY)
    with engine.connect() as conn:
        screened = screen_audience(conn, sequence=sequence, spec=SPEC, now=T0)

    assert [s.lead_id for s in screened.selected] == [kept]
    assert screened.screened_out == {
        hot: "status hot",
        disqualified: "disqualified",
        contacted: "contacted in the last 14 days",
        told_by_field: "contacted in the last 14 days",
        no_consent: "no email consent",
        no_email: "no email",
        opted_out: "email suppressed",
        live: "already enrolled",
    }
    assert screened.excluded["contacted in the last 14 days"] == 2


def test_max_leads_caps_the_run_with_the_same_sample_each_time(
    engine: Engine, catalog: SequenceCatalog, make_leads: MakeLeads
) -> None:
    make_leads(10)
    spec = SPEC.model_copy(update={"max_leads": 4})
    first, second = _reasons(engine, catalog, spec), _reasons(engine, catalog, spec)
    assert len(first) == 4 and first == second
    with engine.connect() as conn:
        screened = screen_audience(conn, sequence=catalog.get("reactivation-offer"), spec=spec, now=T0)
    assert screened.excluded == {"over max_leads": 6}


def test_run_enrolls_the_selection_once(
    engine: Engine, catalog: SequenceCatalog, make_leads: MakeLeads
) -> None:
    dormant = make_leads(5)
    make_leads(2, last_engaged_at=T0 - 10 * DAY)

    report = run_reactivation(engine, now=T0, catalog=catalog, sequence_name="reactivation-offer")

    assert (len(report.selected), report.enrolled, report.already) == (5, 5, 0)
    assert {row["lead_id"] for row in report.rows()} == {str(lead) for lead in dormant}
    assert all(row["reason"] == "dormant: no engagement for 200 days" for row in report.rows())
    again = run_reactivation(engine, now=T0 + DAY, catalog=catalog, sequence_name="reactivation-offer")
    assert (len(again.selected), again.enrolled, again.excluded["already enrolled"]) == (0, 0, 5)
    assert "selected 0, enrolled 0" in again.summary()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ENROLLMENTS)).scalar_one() == 5


def test_a_sequence_without_audience_is_refused(engine: Engine, catalog: SequenceCatalog) -> None:
    with pytest.raises(SequenceError, match="'incubator' has no audience: block"):
        run_reactivation(engine, now=T0, catalog=catalog, sequence_name="incubator")
