"""Reconciliation of unknown outbox rows: resolved from provider events, the local outbox's files
and Twilio lookups; without evidence they wait, then fail after the grace period (no new attempt);
a message the local outbox certainly never wrote is failed for a new attempt."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from channels.base import EmailMessage, SmsMessage
from channels.local_outbox import LocalOutboxEmail, LocalOutboxSms
from channels.registry import build_channels
from channels.twilio import TwilioSms
from channels.webhooks import NormalizedEvent
from models.tables import EventType
from spirale.events import store_events
from spirale.reconcile import reconcile_unknown
from spirale.settings import Settings
from tests.events.factories import MONDAY, add_enrollment, add_lead, add_outbox, outbox
from tests.fakes.providers import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, FakeProviders, running_fake_providers

pytestmark = pytest.mark.db
LATER = MONDAY + timedelta(hours=1)


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with running_fake_providers() as providers:
        yield providers


def unknown(engine: Engine, **overrides: object) -> uuid.UUID:
    lead_id = add_lead(engine)
    enrollment_id = add_enrollment(engine, lead_id)
    values = {"state": "unknown", "updated_at": MONDAY, **overrides}
    return add_outbox(engine, lead_id, enrollment_id, **values)


def test_a_provider_event_proves_the_send(engine: Engine, settings: Settings) -> None:
    outbox_id = unknown(engine)
    with engine.begin() as conn:
        event = NormalizedEvent(
            EventType.PROCESSED, "sendgrid:p-1", MONDAY, "sendgrid", outbox_id=str(outbox_id), payload={}
        )
        store_events(conn, [event], received_at=MONDAY)
    report = reconcile_unknown(engine, now=LATER, settings=settings, channels=build_channels(settings))
    row = outbox(engine, outbox_id)
    assert (row.state, row.sent_at, row.error_message) == ("sent", MONDAY, "reconciled: provider event")
    assert dict(report.confirmed) == {"event": 1}


def test_the_local_outbox_files_are_the_evidence(engine: Engine, settings: Settings) -> None:
    email_channel = LocalOutboxEmail(settings.outbox_dir)
    sms_channel = LocalOutboxSms(settings.outbox_dir)
    written = unknown(engine, provider="local-outbox")
    texted = unknown(engine, provider="local-outbox", channel="sms", to_address="+33612345678")
    email_channel.send(
        EmailMessage(str(written), "a@example.fr", "Objet", "<p>x</p>", "x", "s@spirale.fr", "S")
    )
    sms_channel.send(SmsMessage(str(texted), "+33612345678", "Bonjour"))
    never_written = unknown(engine, provider="local-outbox")
    never_texted = unknown(engine, provider="local-outbox", channel="sms", to_address="+33612345678")
    channels = {"email": email_channel, "sms": sms_channel}
    report = reconcile_unknown(engine, now=LATER, settings=settings, channels=channels)
    assert outbox(engine, written).state == outbox(engine, texted).state == "sent"
    for outbox_id in (never_written, never_texted):
        row = outbox(engine, outbox_id)
        # Certainly never sent: failed with retry_at now, so recovery sends a new attempt.
        assert (row.state, row.error_code, row.retry_at) == ("failed", "not_sent", LATER)
    assert (report.confirmed["local outbox"], report.resent) == (2, 2)


def test_without_evidence_a_row_waits_then_fails_without_a_new_attempt(
    engine: Engine, settings: Settings
) -> None:
    outbox_id = unknown(engine, provider="sendgrid")
    channels = build_channels(settings)
    waiting = reconcile_unknown(engine, now=LATER, settings=settings, channels=channels)
    assert (waiting.waiting, outbox(engine, outbox_id).state) == (1, "unknown")
    after_grace = reconcile_unknown(
        engine, now=MONDAY + timedelta(hours=25), settings=settings, channels=channels
    )
    row = outbox(engine, outbox_id)
    assert (row.state, row.error_message, row.retry_at) == ("failed", "no provider evidence", None)
    assert after_grace.failed == 1


def test_late_evidence_still_turns_a_failed_row_into_sent(engine: Engine, settings: Settings) -> None:
    outbox_id = unknown(engine, provider="sendgrid")
    channels = build_channels(settings)
    reconcile_unknown(engine, now=MONDAY + timedelta(days=2), settings=settings, channels=channels)
    assert outbox(engine, outbox_id).state == "failed"
    with engine.begin() as conn:
        late = NormalizedEvent(
            EventType.DELIVERED, "sendgrid:d-1", MONDAY, "sendgrid", outbox_id=str(outbox_id), payload={}
        )
        store_events(conn, [late], received_at=MONDAY + timedelta(days=2))
    from spirale.events import process_events

    process_events(engine, now=MONDAY + timedelta(days=2), settings=settings)
    assert (outbox(engine, outbox_id).state, outbox(engine, outbox_id).delivery_status) == (
        "sent",
        "delivered",
    )


def test_a_twilio_lookup_settles_a_known_sid(engine: Engine, settings: Settings, fake: FakeProviders) -> None:
    twilio = TwilioSms(
        TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, from_="+33700000000", base_url=fake.url, per_second=1000
    )
    sid = twilio.send(SmsMessage("x", "+33612345678", "Bonjour")).provider_message_id
    found = unknown(engine, provider="twilio", channel="sms", provider_message_id=sid)
    lost = unknown(engine, provider="twilio", channel="sms", provider_message_id="SM" + "0" * 32)
    report = reconcile_unknown(engine, now=LATER, settings=settings, channels={"sms": twilio})
    assert outbox(engine, found).state == "sent"
    assert outbox(engine, found).delivery_status is not None
    assert outbox(engine, lost).state == "unknown"  # a failed lookup is no proof either way
    assert (report.confirmed["lookup"], report.lookup_errors, report.waiting) == (1, 1, 1)
