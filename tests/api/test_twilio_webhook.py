"""Twilio's callbacks through the real app and the SDK's ``RequestValidator``: status moves only
forward, STOP / START / HELP keywords, forged requests refused with nothing changed."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import Engine
from twilio.request_validator import RequestValidator

from spirale.settings import Settings
from tests.api.conftest import TWILIO_TOKEN, twilio_headers
from tests.events.factories import (
    EVENTS,
    TRANSACTIONAL,
    add_enrollment,
    add_lead,
    add_outbox,
    count,
    enrollment,
    lead,
    outbox,
    snapshot,
    suppressed,
)

pytestmark = pytest.mark.db
PHONE = "+33612345678"


def post_form(
    client: httpx.Client, path: str, params: dict[str, str], **header_overrides: str
) -> httpx.Response:
    headers = {**twilio_headers(path, params), **header_overrides}
    return client.post(path, content=urlencode(params).encode(), headers=headers)


def status(client: httpx.Client, outbox_id: object, value: str, **extra: str) -> httpx.Response:
    path = f"/webhooks/twilio/status?outbox_id={outbox_id}"
    params = {
        "MessageSid": "SM" + "a" * 32,
        "MessageStatus": value,
        "To": PHONE,
        "AccountSid": "AC1",
        **extra,
    }
    return post_form(client, path, params)


def inbound(client: httpx.Client, body: str, sid: str) -> httpx.Response:
    params = {"MessageSid": sid, "From": PHONE, "To": "+33700000000", "Body": body, "AccountSid": "AC1"}
    return post_form(client, "/webhooks/twilio/inbound", params)


def sms_lines(settings: Settings) -> list[dict[str, object]]:
    path = Path(settings.outbox_dir) / "sms.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def sms(engine: Engine) -> tuple[object, object, object]:
    lead_id = add_lead(engine, phone=PHONE)
    enrollment_id = add_enrollment(engine, lead_id)
    outbox_id = add_outbox(
        engine, lead_id, enrollment_id, channel="sms", provider="twilio", to_address=PHONE, state="unknown"
    )
    return lead_id, enrollment_id, outbox_id


def test_out_of_order_status_callbacks_end_delivered(
    client: httpx.Client, engine: Engine, sms: tuple
) -> None:
    _, _, outbox_id = sms
    for value in ("delivered", "sent", "queued"):
        assert status(client, outbox_id, value).status_code == 204
    row = outbox(engine, outbox_id)
    assert (row.state, row.delivery_status, row.provider_message_id) == ("sent", "delivered", "SM" + "a" * 32)


def test_a_failure_after_sent_is_final(client: httpx.Client, engine: Engine, sms: tuple) -> None:
    _, _, outbox_id = sms
    for value in ("sent", "undelivered", "delivered"):
        status(client, outbox_id, value)
    assert outbox(engine, outbox_id).delivery_status == "undelivered"


def test_error_21610_suppresses_the_number(client: httpx.Client, engine: Engine, sms: tuple) -> None:
    _, enrollment_id, outbox_id = sms
    status(client, outbox_id, "failed", ErrorCode="21610")
    assert suppressed(engine, "sms", PHONE)
    assert enrollment(engine, enrollment_id).state == "exited"


def test_stop_suppresses_the_number_and_exits_marketing_enrollments(
    client: httpx.Client, engine: Engine, sms: tuple
) -> None:
    lead_id, enrollment_id, _ = sms
    receipts = add_enrollment(engine, lead_id, TRANSACTIONAL)
    response = inbound(client, "  arrêt ", "SM" + "1" * 32)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert suppressed(engine, "sms", PHONE)
    assert (enrollment(engine, enrollment_id).state, enrollment(engine, enrollment_id).exit_reason) == (
        "exited",
        "sms stop",
    )
    assert enrollment(engine, receipts).state == "active"  # transactional messages go on


def test_start_lifts_the_suppression_without_resuming(
    client: httpx.Client, engine: Engine, sms: tuple
) -> None:
    _, enrollment_id, _ = sms
    inbound(client, "STOP", "SM" + "1" * 32)
    inbound(client, "start", "SM" + "2" * 32)
    assert not suppressed(engine, "sms", PHONE)
    assert enrollment(engine, enrollment_id).state == "exited"


def test_help_is_answered_once(client: httpx.Client, engine: Engine, settings: Settings, sms: tuple) -> None:
    inbound(client, "help", "SM" + "3" * 32)
    inbound(client, "help", "SM" + "3" * 32)  # Twilio retried the same message
    [line] = sms_lines(settings)
    assert (line["to"], line["body"]) == (PHONE, settings.sms_help_text)
    assert not suppressed(engine, "sms", PHONE)


def test_a_reply_is_engagement_and_ends_sequences_that_exit_on_replies(
    client: httpx.Client, engine: Engine, sms: tuple
) -> None:
    lead_id, enrollment_id, _ = sms
    inbound(client, "Oui, rappelez-moi demain", "SM" + "4" * 32)
    assert lead(engine, lead_id).last_engaged_at is not None
    assert enrollment(engine, enrollment_id).exit_reason == "replied"
    assert not suppressed(engine, "sms", PHONE)


def test_forged_requests_are_refused_and_change_nothing(
    client: httpx.Client, engine: Engine, sms: tuple
) -> None:
    _, _, outbox_id = sms
    path = "/webhooks/twilio/inbound"
    params = {"MessageSid": "SM" + "5" * 32, "From": PHONE, "Body": "STOP"}
    body = urlencode(params).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    signed_for_request_host = twilio_headers(path, params)  # computed for PUBLIC_URL...
    own_host = {
        **form,
        "X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(
            "http://testserver" + path, params
        ),
    }
    before = snapshot(engine)
    attempts = [
        (path, body, {**form, "X-Twilio-Signature": "forged"}),
        (path, body, form),
        (path, body, twilio_headers(path, params, token="another-token")),
        (path, urlencode({**params, "Body": "START"}).encode(), signed_for_request_host),
        (path, body, own_host),  # signed for the request's own host, not the public URL
        (path, body + b"&Body=STOP", signed_for_request_host),  # a repeated parameter
        (f"/webhooks/twilio/status?outbox_id={outbox_id}", b"MessageSid=SM1&MessageStatus=delivered", form),
    ]
    for url, content, headers in attempts:
        assert client.post(url, content=content, headers=headers).status_code == 403, headers
    assert snapshot(engine) == before


def test_replayed_callbacks_are_stored_once(client: httpx.Client, engine: Engine, sms: tuple) -> None:
    _, _, outbox_id = sms
    status(client, outbox_id, "delivered")
    status(client, outbox_id, "delivered")
    path = f"/webhooks/twilio/status?outbox_id={outbox_id}"
    params = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "sent"}
    token = {"I-Twilio-Idempotency-Token": "token-1"}
    post_form(client, path, params, **token)
    post_form(client, path, params, **token)
    assert count(engine, EVENTS) == 2


def test_twilio_webhooks_are_closed_without_an_auth_token(
    settings: Settings, sms: tuple, engine: Engine
) -> None:
    from spirale.api.app import create_app
    from tests.api.client import in_process_client

    closed = create_app(settings.model_copy(update={"twilio_auth_token": None}))
    with in_process_client(closed) as client:
        assert inbound(client, "STOP", "SM" + "6" * 32).status_code == 403
    assert not suppressed(engine, "sms", PHONE)
