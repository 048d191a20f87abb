"""The dispatch engine end to end on a real database (SQLite, and PostgreSQL in the second pass)."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text, update

from models.claims import Shard
from models.suppressions import suppress
from models.tables import Enrollment, Event, OutboxMessage, SalesTask, VariantAssignment
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.dispatch.report import DispatchReport
from spirale.errors import PermanentSendError, RetryableSendError, UnknownOutcomeError
from spirale.settings import Settings
from tests.dispatch.conftest import MONDAY_9H, Enroll, MakeLeads
from tests.fakes.recording import RecordingChannel, recording_channels

pytestmark = pytest.mark.db
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
ENROLLMENTS = Enrollment.__table__  # type: ignore[attr-defined]
PARIS = ZoneInfo("Europe/Paris")


def run_days(
    dispatcher: Dispatcher, start: datetime, days: int, step: timedelta = timedelta(hours=1)
) -> None:
    now = start
    while now <= start + timedelta(days=days):
        dispatcher.dispatch_due(now=now)
        now += step


def outbox_rows(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(OUTBOX)).mappings()]


def test_every_step_is_sent_exactly_once_at_the_right_time(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    leads = make_leads(30)
    assert enroll(leads, "drip") == 30
    run_days(dispatcher, MONDAY_9H, 10)

    sent = channels["email"].sent + channels["sms"].sent
    assert len(sent) == 90
    rows = outbox_rows(engine)
    assert Counter(r["state"] for r in rows) == {"sent": 90}
    keys = {(r["lead_id"], r["step_id"]) for r in rows}
    assert len(keys) == 90
    assert {m.outbox_id for m in sent} == {str(r["id"]) for r in rows}
    for row in rows:
        local = row["sent_at"].astimezone(PARIS)  # type: ignore[union-attr]
        if row["channel"] == "sms":
            assert local.weekday() != 6 and 8 <= local.hour < 20
    with engine.connect() as conn:
        states = Counter(s for (s,) in conn.execute(select(ENROLLMENTS.c.state)))
    assert states == {"completed": 30}


def test_sms_due_on_sunday_waits_for_monday_8am(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    saturday_noon = datetime(2026, 12, 12, 11, 0, tzinfo=UTC)
    leads = make_leads(1)
    enroll(leads, "drip", now=saturday_noon)
    report = dispatcher.dispatch_due(now=saturday_noon)  # the email goes at once
    assert report.sent == {"email": 1}
    sunday = datetime(2026, 12, 13, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:  # make the SMS due on Sunday, as a backlog would
        conn.execute(ENROLLMENTS.update().values(next_due_at=sunday))
    report = dispatcher.dispatch_due(now=sunday)
    assert report.deferred == {"window": 1} and not channels["sms"].sent
    with engine.connect() as conn:
        due = conn.execute(select(ENROLLMENTS.c.next_due_at)).scalar_one()
    assert due.astimezone(PARIS) == datetime(2026, 12, 14, 8, 0, tzinfo=PARIS)
    report = dispatcher.dispatch_due(now=due)
    assert report.sent == {"sms": 1}


def test_suppression_arriving_after_enrollment_blocks_the_send(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    leads = make_leads(3)
    enroll(leads, "drip")
    with engine.begin() as conn:
        suppress(
            conn,
            channel="email",
            address="lead1@example.fr",
            reason="unsubscribed",
            source="test",
            now=MONDAY_9H,
        )
    report = dispatcher.dispatch_due(now=MONDAY_9H)
    assert report.sent == {"email": 2} and report.suppressed == {"email": 1}
    assert "lead1@example.fr" not in {m.to for m in channels["email"].sent}
    assert Counter(r["state"] for r in outbox_rows(engine)) == {"sent": 2, "suppressed": 1}


def test_without_consent_the_step_is_skipped_not_sent(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    enroll(make_leads(2, consent_email=False), "drip")
    report = dispatcher.dispatch_due(now=MONDAY_9H)
    assert report.skipped == {"no email consent": 2}
    assert channels["email"].sent == []


def test_frequency_cap_defers_a_second_sequence_by_a_day(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    leads = make_leads(5)
    enroll(leads, "drip")
    enroll(leads, "monthly")
    report = dispatcher.dispatch_due(now=MONDAY_9H)
    assert report.sent == {"email": 5} and report.deferred == {"frequency_cap": 5}
    report = dispatcher.dispatch_due(now=MONDAY_9H + timedelta(hours=23, minutes=59))
    assert report.total_sent == 0
    run_days(dispatcher, MONDAY_9H + timedelta(hours=24), 8)
    rows = [r for r in outbox_rows(engine) if r["state"] == "sent"]
    assert len(rows) == 5 * 4  # drip's three steps and the monthly news, deferred but not dropped
    by_lead: dict[object, list[datetime]] = {}
    for row in rows:
        by_lead.setdefault(row["lead_id"], []).append(row["sent_at"])  # type: ignore[arg-type]
    for times in by_lead.values():
        times.sort()
        assert all(b - a >= timedelta(hours=24) for a, b in itertools.pairwise(times))


def test_frequency_cap_holds_when_two_shards_decide_at_the_same_instant(
    engine: Engine, catalog: SequenceCatalog, settings: Settings, make_leads: MakeLeads, enroll: Enroll
) -> None:
    """Two shard dispatchers claim, then decide, before either writes: neither sees the other's
    sends. A lead's enrollments are all in one shard, so one decider holds both of its due steps and
    the cap still sends one and defers the other."""
    leads = make_leads(40)
    enroll(leads, "drip")
    enroll(leads, "monthly")
    shared = recording_channels()
    shards = [
        Dispatcher(engine=engine, catalog=catalog, channels=shared, settings=settings, shard=Shard(index, 2))
        for index in (0, 1)
    ]
    claimed = [shard.claim(MONDAY_9H) for shard in shards]
    reports = [DispatchReport(), DispatchReport()]
    writes = [
        shard.decide(batch, now=MONDAY_9H, report=report)
        for shard, batch, report in zip(shards, claimed, reports, strict=True)
    ]
    assert sum(len(batch) for batch in claimed) == 80 and all(claimed)
    assert Counter(send.lead_id for batch in writes for send in batch.sends) == Counter(leads)
    assert sum(report.deferred["frequency_cap"] for report in reports) == 40


def test_variants_follow_weights_and_assignments_are_stored(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    leads = make_leads(2000)
    enroll(leads, "ab")
    report = dispatcher.dispatch_due(now=MONDAY_9H)
    table = VariantAssignment.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        arms = Counter(v for (v,) in conn.execute(select(table.c.variant)))
    assert sum(arms.values()) == 2000
    # 45/45/10 within 4 standard deviations.
    assert abs(arms["discount"] - 900) < 90 and abs(arms["audit"] - 900) < 90
    assert abs(arms["holdout"] - 200) < 55
    assert report.holdout == arms["holdout"]
    assert report.sent["email"] == arms["discount"] + arms["audit"]
    by_subject = Counter(m.subject for m in channels["email"].sent)  # type: ignore[union-attr]
    assert by_subject == {"-20%": arms["discount"], "Audit offert": arms["audit"]}


def test_manual_step_creates_a_sales_task_for_the_owner(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    enroll(make_leads(1, owner="bruno", company="Bouygues"), "calls")
    report = dispatcher.dispatch_due(now=MONDAY_9H + timedelta(hours=1))  # 10:00 Paris: calling hours
    assert report.tasks == {"call": 1}
    table = SalesTask.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        task = conn.execute(select(table)).mappings().one()
    assert task["owner"] == "bruno" and task["kind"] == "call" and "Bouygues" in task["note"]
    assert channels["email"].sent == []


def test_lead_turning_hot_or_replying_exits_the_enrollment(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    hot, replied, stays = make_leads(3)
    enroll([hot, replied, stays], "drip")
    dispatcher.dispatch_due(now=MONDAY_9H)
    events = Event.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE leads SET status = 'hot' WHERE id = :id"),
            {"id": hot.hex if conn.dialect.name == "sqlite" else hot},
        )
        conn.execute(
            events.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "type": "reply",
                    "lead_id": replied,
                    "dedup_key": "r1",
                    "occurred_at": MONDAY_9H,
                    "received_at": MONDAY_9H,
                    "payload": {},
                }
            ],
        )
    report = dispatcher.dispatch_due(now=MONDAY_9H + timedelta(days=2))
    assert report.exited == {"lead is hot": 1, "replied": 1}
    assert report.sent == {"sms": 1}


def test_unknown_outcome_is_never_resent(
    engine: Engine, catalog: SequenceCatalog, settings: Settings, make_leads: MakeLeads, enroll: Enroll
) -> None:
    channels = recording_channels(fault=lambda m: UnknownOutcomeError("timeout", channel="email"))
    dispatcher = Dispatcher(engine=engine, catalog=catalog, channels=channels, settings=settings)
    enroll(make_leads(4), "drip")
    report = dispatcher.dispatch_due(now=MONDAY_9H)
    assert report.unknown == {"email": 4}
    later = dispatcher.dispatch_due(now=MONDAY_9H + timedelta(hours=1))
    assert later.total_sent == 0 and later.retried == 0
    assert channels["email"].attempts == 4
    assert Counter(r["state"] for r in outbox_rows(engine)) == {"unknown": 4}


def test_rate_limited_send_is_retried_as_a_new_attempt_then_sent_once(
    engine: Engine, catalog: SequenceCatalog, settings: Settings, make_leads: MakeLeads, enroll: Enroll
) -> None:
    limited = {"on": True}

    def fault(message: object) -> RetryableSendError | None:
        return RetryableSendError("429", channel="email", retry_after=90) if limited["on"] else None

    channels = recording_channels(fault=fault)
    dispatcher = Dispatcher(engine=engine, catalog=catalog, channels=channels, settings=settings)
    dispatcher.recorder.rand = lambda: 1.0  # the top of the jittered backoff, to pin the instants
    enroll(make_leads(3), "drip")
    assert dispatcher.dispatch_due(now=MONDAY_9H).failed == {"email": 3}
    # The provider's reset (90 s) wins over the first backoff step (60 s).
    assert dispatcher.dispatch_due(now=MONDAY_9H + timedelta(seconds=89)).retried == 0
    assert dispatcher.dispatch_due(now=MONDAY_9H + timedelta(seconds=90)).failed == {"email": 3}
    # Attempt 2 failed too: the backoff doubles to 2 minutes, however long the outage lasts.
    limited["on"] = False
    later = MONDAY_9H + timedelta(seconds=90)
    assert dispatcher.dispatch_due(now=later + timedelta(seconds=100)).retried == 0
    report = dispatcher.dispatch_due(now=later + timedelta(seconds=120))
    assert report.retried == 3 and report.sent == {"email": 3}
    rows = outbox_rows(engine)
    assert Counter((r["attempt"], r["state"]) for r in rows) == {
        (1, "failed"): 3,
        (2, "failed"): 3,
        (3, "sent"): 3,
    }
    assert len(channels["email"].sent) == 3


def test_opted_out_number_is_suppressed_for_good(
    engine: Engine, catalog: SequenceCatalog, settings: Settings, make_leads: MakeLeads, enroll: Enroll
) -> None:
    def fault(message: object) -> PermanentSendError | None:
        return PermanentSendError("21610", channel="sms", provider_code="21610", suppress_address=True)

    channels = recording_channels()
    channels["sms"].fault = fault
    dispatcher = Dispatcher(engine=engine, catalog=catalog, channels=channels, settings=settings)
    enroll(make_leads(1), "drip")
    run_days(dispatcher, MONDAY_9H, 3)
    with engine.connect() as conn:
        reasons = conn.execute(text("SELECT channel, reason FROM suppressions")).all()
    assert [tuple(r) for r in reasons] == [("sms", "provider 21610")]


def test_crash_after_decisions_leaves_pending_rows_that_recovery_sends_once(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    from spirale.dispatch.report import DispatchReport
    from spirale.dispatch.writes import flush_decisions

    enroll(make_leads(5), "drip")
    claimed = dispatcher.claim(MONDAY_9H)
    writes = dispatcher.decide(claimed, now=MONDAY_9H, report=DispatchReport())
    with engine.begin() as conn:
        flush_decisions(conn, writes)  # ...and the process dies before marking them 'sending'
    assert dispatcher.dispatch_due(now=MONDAY_9H + timedelta(seconds=5)).recovered == 0
    report = dispatcher.dispatch_due(now=MONDAY_9H + timedelta(minutes=6))
    assert report.recovered == 5 and report.sent == {"email": 5}
    assert len(channels["email"].sent) == 5
    assert Counter(r["state"] for r in outbox_rows(engine)) == {"sent": 5}


def test_crash_after_sending_committed_turns_rows_unknown(
    engine: Engine, catalog: SequenceCatalog, settings: Settings, make_leads: MakeLeads, enroll: Enroll
) -> None:
    class Crash(BaseException):
        pass

    def crash(message: object) -> None:
        raise Crash

    channels = recording_channels(fault=crash)  # type: ignore[arg-type]
    dispatcher = Dispatcher(engine=engine, catalog=catalog, channels=channels, settings=settings)
    enroll(make_leads(2), "drip")
    with pytest.raises(Crash):
        dispatcher.dispatch_due(now=MONDAY_9H)
    assert Counter(r["state"] for r in outbox_rows(engine)) == {"sending": 2}
    healthy = Dispatcher(engine=engine, catalog=catalog, channels=recording_channels(), settings=settings)
    report = healthy.dispatch_due(now=MONDAY_9H + timedelta(minutes=6))
    assert report.unknown == {"email": 2} and report.total_sent == 0
    assert Counter(r["state"] for r in outbox_rows(engine)) == {"unknown": 2}


def test_recurring_policy_repeats_every_month_then_completes(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    enroll(make_leads(1), "monthly")
    run_days(dispatcher, MONDAY_9H, 100, step=timedelta(hours=6))
    times = sorted(m.outbox_id for m in channels["email"].sent)
    assert len(times) == 3
    with engine.connect() as conn:
        state, cycle = conn.execute(select(ENROLLMENTS.c.state, ENROLLMENTS.c.cycle)).one()
    assert (state, cycle) == ("completed", 2)


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_dispatchers_never_send_twice(
    engine: Engine,
    catalog: SequenceCatalog,
    settings: Settings,
    make_leads: MakeLeads,
    enroll: Enroll,
    workers: int,
) -> None:
    enroll(make_leads(600), "drip")
    shared = recording_channels()
    settings = settings.model_copy(update={"dispatch_batch_size": 50})
    dispatchers = [
        Dispatcher(
            engine=engine,
            catalog=SequenceCatalog.open(catalog.sequences_dir),
            channels=shared,
            settings=settings,
        )
        for _ in range(workers)
    ]
    errors: list[BaseException] = []

    def work(d: Dispatcher) -> None:
        try:
            d.dispatch_due(now=MONDAY_9H)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [m.outbox_id for m in shared["email"].sent]
    assert len(ids) == 600 == len(set(ids))
    assert len({m.to for m in shared["email"].sent}) == 600


def test_a_promotion_sends_new_leads_to_the_winner_and_keeps_old_assignments(
    engine: Engine,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
    make_leads: MakeLeads,
    enroll: Enroll,
) -> None:
    from scoring.promotion import promote

    early = make_leads(300)
    enroll(early, "ab")
    dispatcher.dispatch_due(now=MONDAY_9H)
    table = VariantAssignment.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        before = dict(conn.execute(select(table.c.lead_id, table.c.variant)).all())
    with engine.begin() as conn:
        promote(
            conn, sequence="ab", step="offer", variant="discount", actor="test", reason="won", now=MONDAY_9H
        )
    late = make_leads(500)
    enroll(late, "ab", now=MONDAY_9H + timedelta(hours=1))
    dispatcher.dispatch_due(now=MONDAY_9H + timedelta(hours=1))
    with engine.connect() as conn:
        after = dict(conn.execute(select(table.c.lead_id, table.c.variant)).all())
    assert {lead: after[lead] for lead in early} == before
    late_arms = Counter(after[lead] for lead in late)
    assert set(late_arms) == {"discount", "holdout"} and 20 < late_arms["holdout"] < 85


def test_enrolling_again_is_idempotent_and_counted(
    engine: Engine, catalog: SequenceCatalog, make_leads: MakeLeads
) -> None:
    from spirale.enrollment import enroll_leads

    leads = make_leads(40)
    sequence, version = catalog.get("drip"), catalog.version("drip")
    with engine.begin() as conn:
        first = enroll_leads(conn, lead_ids=leads[:25], sequence=sequence, version=version, now=MONDAY_9H)
        again = enroll_leads(conn, lead_ids=leads, sequence=sequence, version=version, now=MONDAY_9H)
    assert (first.enrolled, first.already) == (25, 0)
    assert (again.enrolled, again.already) == (15, 25)
    with engine.connect() as conn:
        assert len(conn.execute(select(ENROLLMENTS.c.id)).all()) == 40
    # An enrollment that ended is not live: its lead can be enrolled again, the others cannot.
    with engine.begin() as conn:
        conn.execute(update(ENROLLMENTS).where(ENROLLMENTS.c.lead_id == leads[0]).values(state="exited"))
        third = enroll_leads(conn, lead_ids=leads[:3], sequence=sequence, version=version, now=MONDAY_9H)
    assert (third.enrolled, third.already) == (1, 2)
