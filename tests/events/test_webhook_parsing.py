"""The webhook verifiers and parsers on their own (no database): SDK verification, keywords,
normalization and dedup keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from channels.webhooks import PayloadError, SignatureError
from channels.webhooks.sendgrid import SendGridWebhookVerifier, parse_events
from channels.webhooks.twilio import TwilioWebhookVerifier, classify, inbound_event, parse_form, status_event
from models.tables import EventType
from spirale.errors import ConfigError
from tests.api.conftest import PUBLIC_URL, SendGridSigner, twilio_headers

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", EventType.SMS_STOP),
        ("  arrêt ", EventType.SMS_STOP),
        ("ARRÊT", EventType.SMS_STOP),
        ("ARRE\u0302T", EventType.SMS_STOP),  # decomposed accent
        ("Arret", EventType.SMS_STOP),
        ("stopall", EventType.SMS_STOP),
        ("OptOut", EventType.SMS_STOP),
        ("start", EventType.SMS_START),
        ("UNSTOP", EventType.SMS_START),
        ("yes", EventType.SMS_START),
        ("help", EventType.SMS_HELP),
        (" Info", EventType.SMS_HELP),
        ("stop please", EventType.SMS_REPLY),  # only the whole message is a keyword
        ("STOP.", EventType.SMS_REPLY),
        ("", EventType.SMS_REPLY),
    ],
)
def test_inbound_keywords(body: str, expected: EventType) -> None:
    assert classify(body) is expected


def test_the_sendgrid_verifier_uses_the_sdk_over_the_raw_body() -> None:
    signer = SendGridSigner()
    verifier = SendGridWebhookVerifier(signer.public_key)
    body = b'[{"event":"open","timestamp":1}]'
    headers = signer.headers(body, int(NOW.timestamp()))
    signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
    timestamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    verifier.verify(body, signature, timestamp, now=NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verifier.verify(body.replace(b"open", b"click"), signature, timestamp, now=NOW)
    with pytest.raises(SignatureError, match="stale"):
        verifier.verify(body, signature, timestamp, now=NOW + timedelta(minutes=11))
    pem = "-----BEGIN PUBLIC KEY-----\n" + signer.public_key + "\n-----END PUBLIC KEY-----\n"
    SendGridWebhookVerifier(pem).verify(body, signature, timestamp, now=NOW)


def test_a_bad_sendgrid_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="SPIRALE_SENDGRID_WEBHOOK_PUBLIC_KEY"):
        SendGridWebhookVerifier("not a key")


def test_sendgrid_events_are_normalized_with_their_dedup_key() -> None:
    item = {"event": "click", "timestamp": 1_700_000_000, "sg_message_id": "abc.filter1", "outbox_id": "o-1"}
    batch = parse_events(f"[{_json(item)}, {_json({**item, 'sg_event_id': 'retry'})}]".encode())
    first, retry = batch.events
    assert first.type is EventType.CLICK
    assert first.provider_message_id == "abc"
    assert first.outbox_id == "o-1"
    assert first.dedup_key == retry.dedup_key
    assert first.payload == item
    with pytest.raises(PayloadError):
        parse_events(b'{"event": "click"}')


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_sendgrid_non_json_numbers_are_stored_as_null(constant: str) -> None:
    """Python's json reads them, PostgreSQL's json column does not: they become null instead of
    failing the insert (found by the webhook fuzz test on PostgreSQL)."""
    body = f'[{{"event": "click", "timestamp": 1700000000, "extra": {constant}}}]'.encode()
    (event,) = parse_events(body).events
    assert event.payload["extra"] is None


def test_twilio_verification_uses_the_public_url() -> None:
    verifier = TwilioWebhookVerifier("token", PUBLIC_URL + "/")
    params = {"MessageSid": "SM1", "MessageStatus": "sent"}
    headers = twilio_headers("/webhooks/twilio/status?outbox_id=o-1", params, token="token")
    signature = headers["X-Twilio-Signature"]
    verifier.verify(path="/webhooks/twilio/status", query="outbox_id=o-1", params=params, signature=signature)
    with pytest.raises(SignatureError):
        verifier.verify(
            path="/webhooks/twilio/status", query="outbox_id=o-2", params=params, signature=signature
        )
    with pytest.raises(SignatureError):
        verifier.verify(path="/webhooks/twilio/status", query="outbox_id=o-1", params=params, signature=None)


def test_twilio_payloads() -> None:
    assert parse_form(b"A=1&B=%C3%A9") == {"A": "1", "B": "é"}
    with pytest.raises(PayloadError, match="repeated"):
        parse_form(b"A=1&A=2")
    with pytest.raises(PayloadError):
        status_event({"MessageSid": "SM1"}, outbox_id=None, idempotency_token=None, now=NOW)
    by_token = inbound_event({"MessageSid": "SM1", "From": "+33612345678"}, idempotency_token="t", now=NOW)
    by_sid = inbound_event({"MessageSid": "SM1", "From": "+33612345678"}, idempotency_token=None, now=NOW)
    assert by_token.dedup_key != by_sid.dedup_key
    assert by_sid.type is EventType.SMS_REPLY


def _json(item: dict[str, object]) -> str:
    import json

    return json.dumps(item)
