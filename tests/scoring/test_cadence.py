"""Sales task outcomes, the hand-back to marketing and the legal limit on prospecting calls."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, update

from scoring.cadence import CallLimitError, TaskError, hand_back_completed, record_outcome
from scoring.call_limit import enforce_call_limit, next_lawful_call
from scoring.routing import route_moves
from scoring.rules import CadenceSpec, ScoringRules
from scoring.status import StatusMove
from scoring.team import Team
from sequences.catalog import SequenceCatalog
from tests.scoring.conftest import MakeLead
from tests.scoring.helpers import ENROLLMENTS, EVENTS, LEADS, MONDAY_10H, TASKS, live_sequences

pytestmark = pytest.mark.db
PARIS = ZoneInfo("Europe/Paris")


def hot_lead(
    engine: Engine,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    team: Team,
    make_lead: MakeLead,
    **values: object,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A hot lead handed to sales: (lead id, its first task id)."""
    lead_id = make_lead(status="hot", **values)
    with engine.begin() as conn:
        routed = route_moves(
            conn,
            moves=[StatusMove(lead_id, "warm", "hot", "test")],
            now=MONDAY_10H,
            rules=rules,
            catalog=catalog,
            team=team,
        )
    return lead_id, routed.task_ids[0]


def test_outcomes_are_checked(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    _, task_id = hot_lead(engine, rules, catalog, team, make_lead, fit_score=60.0)
    with (
        engine.begin() as conn,
        pytest.raises(TaskError, match="unknown outcome 'busy': expected one of reached"),
    ):
        record_outcome(conn, task_id=task_id, outcome="busy", now=MONDAY_10H, actor="alice")
    with engine.begin() as conn, pytest.raises(TaskError, match="no task"):
        record_outcome(conn, task_id=uuid.uuid4(), outcome="reached", now=MONDAY_10H, actor="alice")
    with engine.begin() as conn:
        first = record_outcome(conn, task_id=task_id, outcome="voicemail", now=MONDAY_10H, actor="alice")
    assert not first.cadence_ended and not first.already
    with engine.begin() as conn, pytest.raises(TaskError, match="already done"):
        record_outcome(conn, task_id=task_id, outcome="meeting", now=MONDAY_10H, actor="alice")


def test_a_meeting_ends_the_cadence_with_an_event_other_sequences_see(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    lead_id, task_id = hot_lead(engine, rules, catalog, team, make_lead, fit_score=60.0)
    with engine.begin() as conn:
        result = record_outcome(conn, task_id=task_id, outcome="meeting", now=MONDAY_10H, actor="alice")
    assert result.cadence_ended and result.exit_reason == "meeting booked"
    with engine.connect() as conn:
        assert live_sequences(conn, lead_id) == []
        types = sorted(conn.execute(select(EVENTS.c.type).where(EVENTS.c.lead_id == lead_id)).scalars())
        assert types == ["meeting_booked", "sales_outcome"]


def test_not_interested_goes_back_to_marketing_by_fit(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    good, good_task = hot_lead(
        engine,
        rules,
        catalog,
        team,
        make_lead,
        fit_score=60.0,
        engagement_score=35.0,
        engagement_at=MONDAY_10H,
    )
    weak, weak_task = hot_lead(
        engine,
        rules,
        catalog,
        team,
        make_lead,
        fit_score=20.0,
        engagement_score=80.0,
        engagement_at=MONDAY_10H,
    )
    with engine.begin() as conn:
        for task_id in (good_task, weak_task):
            record_outcome(conn, task_id=task_id, outcome="not-interested", now=MONDAY_10H, actor="alice")
        assert hand_back_completed(conn, now=MONDAY_10H, rules=rules, catalog=catalog) == 2
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(LEADS.c.id, LEADS.c.status)).all())
        assert statuses == {good: "warm", weak: "cold"}
        assert live_sequences(conn, good) == ["whitepaper-nurture"]
        assert live_sequences(conn, weak) == ["incubator"]
        reasons = sorted(
            conn.execute(
                select(ENROLLMENTS.c.exit_reason).where(ENROLLMENTS.c.sequence_name == "sales-cadence")
            ).scalars()
        )
    assert reasons == [
        "handed back to incubator (not interested)",
        "handed back to whitepaper-nurture (not interested)",
    ]


def test_a_finished_cadence_waits_for_its_last_task_then_expires_it(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    lead_id, task_id = hot_lead(engine, rules, catalog, team, make_lead, fit_score=60.0)
    with engine.begin() as conn:  # as the dispatcher leaves it after the seventh step
        conn.execute(
            update(ENROLLMENTS)
            .where(ENROLLMENTS.c.lead_id == lead_id)
            .values(state="completed", step_index=7, next_due_at=None)
        )
    with engine.begin() as conn:
        assert (
            hand_back_completed(conn, now=MONDAY_10H + timedelta(days=1), rules=rules, catalog=catalog) == 0
        )
    with engine.begin() as conn:
        assert (
            hand_back_completed(conn, now=MONDAY_10H + timedelta(days=3), rules=rules, catalog=catalog) == 1
        )
        task = conn.execute(select(TASKS.c.state, TASKS.c.outcome).where(TASKS.c.id == task_id)).one()
    assert tuple(task) == ("cancelled", "expired")


def test_a_lead_that_answered_after_the_last_attempt_stays_with_sales(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    lead_id, task_id = hot_lead(engine, rules, catalog, team, make_lead, fit_score=60.0)
    with engine.begin() as conn:
        record_outcome(conn, task_id=task_id, outcome="no-answer", now=MONDAY_10H, actor="alice")
        conn.execute(
            update(ENROLLMENTS)
            .where(ENROLLMENTS.c.lead_id == lead_id)
            .values(state="completed", step_index=7)
        )
        conn.execute(
            EVENTS.insert(),
            {
                "id": uuid.uuid4(),
                "type": "reply",
                "lead_id": lead_id,
                "dedup_key": "r1",
                "payload": {},
                "occurred_at": MONDAY_10H + timedelta(days=21),
                "received_at": MONDAY_10H + timedelta(days=21),
            },
        )
        assert (
            hand_back_completed(conn, now=MONDAY_10H + timedelta(days=22), rules=rules, catalog=catalog) == 0
        )
        reason = conn.execute(
            select(ENROLLMENTS.c.exit_reason).where(ENROLLMENTS.c.lead_id == lead_id)
        ).scalar_one()
        status = conn.execute(select(LEADS.c.status).where(LEADS.c.id == lead_id)).scalar_one()
    assert reason == "kept by sales: the lead answered" and status == "hot"


CADENCE = CadenceSpec()
T = datetime(2026, 12, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("made_days_ago", "allowed_after"),
    [
        ([], None),
        ([1, 2, 3], None),  # a fourth call is lawful
        (
            [1, 2, 3, 29],
            T - timedelta(days=29) + timedelta(days=30, seconds=1),
        ),  # wait for the oldest to leave
        ([1, 2, 3, 31], None),  # the fourth is older than 30 days
    ],
)
def test_next_lawful_call(made_days_ago: list[int], allowed_after: datetime | None) -> None:
    made = [T - timedelta(days=d) for d in made_days_ago]
    assert next_lawful_call(made, at=T, cadence=CADENCE) == allowed_after


def test_a_fifth_call_in_30_days_is_refused_and_deferred_on_the_list(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead
) -> None:
    lead_id, first = hot_lead(engine, rules, catalog, team, make_lead, fit_score=60.0)
    with engine.begin() as conn:
        enrollment_id = conn.execute(select(TASKS.c.enrollment_id).where(TASKS.c.id == first)).scalar_one()
        calls = [
            {
                "id": uuid.uuid4(),
                "lead_id": lead_id,
                "enrollment_id": enrollment_id,
                "kind": "call",
                "owner": "alice",
                "state": "done",
                "outcome": "no-answer",
                "step_id": f"old-{d}",
                "cycle": 0,
                "note": "",
                "due_at": MONDAY_10H - timedelta(days=d),
                "created_at": MONDAY_10H - timedelta(days=d),
                "done_at": MONDAY_10H - timedelta(days=d),
            }
            for d in (1, 5, 9, 12)
        ]
        conn.execute(TASKS.insert(), calls)
    with engine.begin() as conn, pytest.raises(CallLimitError) as refused:
        record_outcome(conn, task_id=first, outcome="no-answer", now=MONDAY_10H, actor="alice", rules=rules)
    # The oldest of the four (12 days ago) leaves the 30-day window 18 days from now.
    assert refused.value.allowed_at == MONDAY_10H + timedelta(days=18, seconds=1)
    assert "Code de la consommation D223-9" in str(refused.value)
    with engine.begin() as conn:
        assert enforce_call_limit(conn, now=MONDAY_10H, rules=rules, catalog=catalog) == 1
        due = conn.execute(select(TASKS.c.due_at).where(TASKS.c.id == first)).scalar_one().astimezone(PARIS)
        assert enforce_call_limit(conn, now=MONDAY_10H, rules=rules, catalog=catalog) == 0  # stable
    # Deferred to the first legal calling slot after that: Friday 25 Dec is Christmas, then a weekend.
    assert due == datetime(2026, 12, 28, 10, 0, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("turned_hot", "due"),
    [
        (
            datetime(2026, 12, 7, 9, 0, tzinfo=PARIS),
            datetime(2026, 12, 7, 10, 0, tzinfo=PARIS),
        ),  # before 10:00
        (datetime(2026, 12, 7, 11, 30, tzinfo=PARIS), datetime(2026, 12, 7, 11, 30, tzinfo=PARIS)),  # at once
        (
            datetime(2026, 12, 7, 13, 15, tzinfo=PARIS),
            datetime(2026, 12, 7, 14, 0, tzinfo=PARIS),
        ),  # lunch break
        (
            datetime(2026, 12, 12, 11, 0, tzinfo=PARIS),
            datetime(2026, 12, 14, 10, 0, tzinfo=PARIS),
        ),  # Saturday
        (
            datetime(2026, 12, 24, 20, 30, tzinfo=PARIS),
            datetime(2026, 12, 28, 10, 0, tzinfo=PARIS),
        ),  # Christmas
    ],
)
def test_the_first_call_is_due_in_the_legal_calling_hours(
    engine: Engine,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    team: Team,
    make_lead: MakeLead,
    turned_hot: datetime,
    due: datetime,
) -> None:
    lead_id = make_lead(status="hot", fit_score=60.0, timezone="Europe/Paris")
    with engine.begin() as conn:
        moves = [StatusMove(lead_id, "warm", "hot", "test")]
        task_id = route_moves(
            conn, moves=moves, now=turned_hot, rules=rules, catalog=catalog, team=team
        ).task_ids[0]
        task = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).mappings().one()
    assert task["created_at"] == turned_hot  # on the list the moment the lead turns hot
    assert task["due_at"].astimezone(PARIS) == due


def test_reaching_a_customer_keeps_their_contact_policy(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, make_lead: MakeLead
) -> None:
    from spirale.enrollment import enroll_leads

    lead_id = make_lead(status="customer", customer_class="A")
    with engine.begin() as conn:
        enroll_leads(
            conn,
            lead_ids=[lead_id],
            sequence=catalog.get("customer-care"),
            version=catalog.version("customer-care"),
            now=MONDAY_10H,
        )
        enrollment_id = conn.execute(
            select(ENROLLMENTS.c.id).where(ENROLLMENTS.c.lead_id == lead_id)
        ).scalar_one()
        task_id = uuid.uuid4()
        conn.execute(
            TASKS.insert(),
            [
                {
                    "id": task_id,
                    "lead_id": lead_id,
                    "enrollment_id": enrollment_id,
                    "sequence_name": "customer-care",
                    "step_id": "monthly-call",
                    "cycle": 0,
                    "kind": "call",
                    "owner": "alice",
                    "note": "",
                    "state": "open",
                    "due_at": MONDAY_10H,
                    "created_at": MONDAY_10H,
                }
            ],
        )
    with engine.begin() as conn:
        result = record_outcome(
            conn, task_id=task_id, outcome="reached", now=MONDAY_10H, actor="alice", rules=rules
        )
    assert not result.cadence_ended
    with engine.connect() as conn:
        assert live_sequences(conn, lead_id) == ["customer-care"]
