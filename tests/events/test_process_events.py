"""process_events: delivery statuses only move forward whatever the arrival order, events are
applied once, opt-outs and exits follow the sequences' rules."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from channels.webhooks import NormalizedEvent, dedup_key
from models.tables import EventType
from spirale.delivery import STATUS_RANK
from spirale.events import process_events, store_events
from spirale.settings import Settings
from tests.events.factories import (
    EVENTS,
    MONDAY,
    add_enrollment,
    add_lead,
    add_outbox,
    enrollment,
    lead,
    outbox,
    suppressed,
)

pytestmark = pytest.mark.db
TWILIO_STATUSES = ["queued", "sent", "delivered", "undelivered", "failed"]


def sms_status(outbox_id: uuid.UUID, value: str, index: int) -> NormalizedEvent:
    return NormalizedEvent(
        type=EventType.SMS_STATUS,
        dedup_key=dedup_key("twilio", outbox_id, value, index),
        occurred_at=MONDAY + timedelta(seconds=index),
        provider="twilio",
        outbox_id=str(outbox_id),
        provider_message_id="SM1",
        payload={"MessageSid": "SM1", "MessageStatus": value, "To": "+33612345678"},
    )


def store(engine: Engine, events: list[NormalizedEvent]) -> None:
    with engine.begin() as conn:
        store_events(conn, events, received_at=MONDAY)


@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(arrivals=st.lists(st.sampled_from(TWILIO_STATUSES), min_size=1, max_size=6))
def test_status_ends_at_the_latest_stage_whatever_the_order(
    engine: Engine, settings: Settings, arrivals: list[str]
) -> None:
    lead_id = add_lead(engine, email=None)
    outbox_id = add_outbox(engine, lead_id, add_enrollment(engine, lead_id), channel="sms", provider="twilio")
    # Each callback is processed on its own, in arrival order (the worst case for ordering).
    for index, value in enumerate(arrivals):
        store(engine, [sms_status(outbox_id, value, index)])
        process_events(engine, now=MONDAY, settings=settings)
    final = outbox(engine, outbox_id).delivery_status
    best = max(STATUS_RANK[v] for v in arrivals)
    assert STATUS_RANK[final] == best
    # Among final statuses the first one to arrive stands: a later one never overrides it.
    assert final == next(v for v in arrivals if STATUS_RANK[v] == best)


def test_events_are_applied_once(engine: Engine, settings: Settings) -> None:
    lead_id = add_lead(engine)
    event = NormalizedEvent(
        type=EventType.CLICK,
        dedup_key="sendgrid:click-1",
        occurred_at=MONDAY,
        provider="sendgrid",
        lead_hint=str(lead_id),
        payload={"email": "x@example.fr"},
    )
    store(engine, [event, event])
    first = process_events(engine, now=MONDAY, settings=settings)
    second = process_events(engine, now=MONDAY + timedelta(minutes=1), settings=settings)
    assert (first.total, second.total) == (1, 0)
    assert first.scoring == "applied"
    with engine.connect() as conn:
        assert conn.execute(select(EVENTS.c.processed_at)).scalar_one() == MONDAY
    assert lead(engine, lead_id).last_engaged_at == MONDAY


def test_a_late_event_never_ends_an_enrollment_started_after_it(engine: Engine, settings: Settings) -> None:
    lead_id = add_lead(engine, phone="+33612345678", status="customer")  # no routing move
    later = add_enrollment(engine, lead_id, enrolled_at=MONDAY + timedelta(hours=1))
    stop = NormalizedEvent(
        type=EventType.SMS_STOP,
        dedup_key="twilio:stop-1",
        occurred_at=MONDAY,
        provider="twilio",
        address="+33612345678",
        payload={"From": "+33612345678", "Body": "STOP"},
    )
    store(engine, [stop])
    report = process_events(engine, now=MONDAY + timedelta(hours=2), settings=settings)
    assert suppressed(engine, "sms", "+33612345678")
    assert enrollment(engine, later).state == "active"
    assert report.processed == {"sms_stop": 1}


def test_events_are_processed_in_batches(engine: Engine, settings: Settings) -> None:
    lead_id = add_lead(engine)
    store(
        engine,
        [
            NormalizedEvent(EventType.OPEN, f"sendgrid:open-{i}", MONDAY, "sendgrid", lead_hint=str(lead_id))
            for i in range(5)
        ],
    )
    first = process_events(engine, now=MONDAY, settings=settings, limit=3)
    second = process_events(engine, now=MONDAY, settings=settings, limit=3)
    assert (first.total, first.more, second.total, second.more) == (3, True, 2, False)


def test_the_report_has_artifact_rows(engine: Engine, settings: Settings) -> None:
    lead_id = add_lead(engine, email="camille@example.fr")
    unsubscribe = NormalizedEvent(
        EventType.UNSUBSCRIBE, "sendgrid:u-1", MONDAY, "sendgrid", lead_hint=str(lead_id), payload={}
    )
    add_enrollment(engine, lead_id)
    store(engine, [unsubscribe])
    report = process_events(engine, now=MONDAY, settings=settings)
    assert suppressed(engine, "email", "camille@example.fr")  # the lead's own address
    rows = {(row["outcome"], row["key"]): row["count"] for row in report.rows()}
    assert rows[("processed", "unsubscribe")] == 1
    assert rows[("exited", "unsubscribed")] == 1
    assert "processed 1 events" in report.summary()
