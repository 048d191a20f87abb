"""SendGrid's signed Event Webhook through the real app and the SDK's verifier: authentic events
are stored once and applied; forged, tampered, stale and replayed requests change nothing."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from tests.api.conftest import SendGridSigner, json_body
from tests.events.factories import (
    EVENTS,
    Clock,
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
URL = "/webhooks/sendgrid"


def sendgrid_event(
    kind: str, outbox_id: object, lead_id: object, clock: Clock, **extra: object
) -> dict[str, object]:
    return {
        "email": "camille@example.fr",
        "timestamp": int(clock.now.timestamp()) - 30,
        "event": kind,
        "sg_event_id": f"evt-{kind}",
        "sg_message_id": "W86EgYT6SQKk0lRflfLRsA.filterdrecv-5645d9c87f-78xgx-1-5D1E",
        "outbox_id": str(outbox_id),
        "lead_id": str(lead_id),
        **extra,
    }


@pytest.fixture
def sent_email(engine: Engine) -> tuple[object, object, object]:
    lead_id = add_lead(engine, email="camille@example.fr")
    enrollment_id = add_enrollment(engine, lead_id, "reactivation-offer")
    outbox_id = add_outbox(engine, lead_id, enrollment_id, to_address="camille@example.fr", state="unknown")
    return lead_id, enrollment_id, outbox_id


def test_a_signed_click_is_applied(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner, sent_email: tuple
) -> None:
    lead_id, enrollment_id, outbox_id = sent_email
    body = json_body(
        [
            sendgrid_event("delivered", outbox_id, lead_id, clock),
            sendgrid_event("click", outbox_id, lead_id, clock, url="https://spirale.example/offre"),
        ]
    )
    response = client.post(
        URL, content=body, headers=sendgrid_signer.headers(body, int(clock.now.timestamp()))
    )
    assert response.status_code == 200
    assert response.json() == {"stored": 2, "duplicates": 0, "ignored": 0}
    row = outbox(engine, outbox_id)
    assert (row.state, row.delivery_status) == ("sent", "delivered")  # the event proves the send
    scored = lead(engine, lead_id)
    assert scored.last_engaged_at is not None  # a click is contact initiated by the lead
    assert scored.engagement_score == pytest.approx(5, abs=0.01)  # click: 5 points (sequences/scoring.yaml)
    assert enrollment(engine, enrollment_id).exit_reason == "clicked"  # reactivation-offer exits on click


def test_an_open_does_not_count_as_engagement(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner, sent_email: tuple
) -> None:
    lead_id, _, outbox_id = sent_email
    body = json_body([sendgrid_event("open", outbox_id, lead_id, clock)])
    client.post(URL, content=body, headers=sendgrid_signer.headers(body, int(clock.now.timestamp())))
    assert count(engine, EVENTS) == 1
    assert lead(engine, lead_id).last_engaged_at is None


def test_unsubscribes_and_spam_reports_suppress_and_exit_marketing_enrollments(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner
) -> None:
    for index, kind in enumerate(["unsubscribe", "group_unsubscribe", "spamreport"]):
        address = f"lead{index}@example.fr"
        lead_id = add_lead(engine, email=address)
        enrollment_id = add_enrollment(engine, lead_id, "reactivation-offer")
        outbox_id = add_outbox(engine, lead_id, enrollment_id, to_address=address)
        body = json_body([{**sendgrid_event(kind, outbox_id, lead_id, clock), "email": address}])
        client.post(URL, content=body, headers=sendgrid_signer.headers(body, int(clock.now.timestamp())))
        assert suppressed(engine, "email", address), kind
        assert enrollment(engine, enrollment_id).state == "exited", kind


def test_a_hard_bounce_suppresses_and_a_block_does_not(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner, sent_email: tuple
) -> None:
    lead_id, _, outbox_id = sent_email
    blocked = json_body([sendgrid_event("bounce", outbox_id, lead_id, clock, type="blocked")])
    client.post(URL, content=blocked, headers=sendgrid_signer.headers(blocked, int(clock.now.timestamp())))
    assert not suppressed(engine, "email", "camille@example.fr")
    bounce = json_body([sendgrid_event("bounce", outbox_id, lead_id, clock, type="bounce", timestamp=1)])
    client.post(URL, content=bounce, headers=sendgrid_signer.headers(bounce, int(clock.now.timestamp())))
    assert suppressed(engine, "email", "camille@example.fr")
    assert outbox(engine, outbox_id).delivery_status == "bounced"


def test_a_replay_is_stored_once(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner, sent_email: tuple
) -> None:
    lead_id, _, outbox_id = sent_email
    body = json_body([sendgrid_event("click", outbox_id, lead_id, clock)])
    headers = sendgrid_signer.headers(body, int(clock.now.timestamp()))
    assert client.post(URL, content=body, headers=headers).json()["stored"] == 1
    before = snapshot(engine)
    # SendGrid retries may carry a new sg_event_id: the key is (sg_message_id, event, timestamp).
    retry = json_body([{**sendgrid_event("click", outbox_id, lead_id, clock), "sg_event_id": "other"}])
    answer = client.post(
        URL, content=retry, headers=sendgrid_signer.headers(retry, int(clock.now.timestamp()))
    )
    assert answer.json() == {"stored": 0, "duplicates": 1, "ignored": 0}
    assert client.post(URL, content=body, headers=headers).json()["stored"] == 0
    assert snapshot(engine) == before


def _forgeries(body: bytes, signer: SendGridSigner, now: int) -> list[tuple[bytes, dict[str, str]]]:
    other = SendGridSigner()
    good = signer.headers(body, now)
    tampered = body.replace(b'"click"', b'"unsubscribe"')
    return [
        (body, other.headers(body, now)),  # signed with another key
        (tampered, good),  # body changed after signing
        (body, {**good, "X-Twilio-Email-Event-Webhook-Timestamp": str(now - 1)}),  # timestamp changed
        (body, signer.headers(body, now - 11 * 60)),  # stale: signed 11 minutes ago
        (body, signer.headers(body, now + 10 * 60)),  # from the future
        (body, {"Content-Type": "application/json"}),  # unsigned
        (body, {**good, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"}),
        (body, {**good, "X-Twilio-Email-Event-Webhook-Timestamp": "yesterday"}),
        (b"\xff" + body, signer.headers(b"\xff" + body, now)),  # not UTF-8
    ]


def test_forged_tampered_and_stale_requests_are_refused_and_change_nothing(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner, sent_email: tuple
) -> None:
    lead_id, _, outbox_id = sent_email
    body = json_body([sendgrid_event("click", outbox_id, lead_id, clock)])
    before = snapshot(engine)
    for content, headers in _forgeries(body, sendgrid_signer, int(clock.now.timestamp())):
        response = client.post(URL, content=content, headers=headers)
        assert response.status_code == 403, headers
        assert response.content == b""
    assert snapshot(engine) == before


def test_a_signed_body_that_is_not_an_event_list_is_a_400(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner
) -> None:
    body = b'{"event": "click"}'
    response = client.post(
        URL, content=body, headers=sendgrid_signer.headers(body, int(clock.now.timestamp()))
    )
    assert response.status_code == 400
    assert count(engine, EVENTS) == 0


def test_unknown_items_are_ignored_not_refused(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner, sent_email: tuple
) -> None:
    lead_id, _, outbox_id = sent_email
    body = json_body(
        [
            {"event": "machine_opened", "timestamp": 1},
            sendgrid_event("processed", outbox_id, lead_id, clock),
        ]
    )
    response = client.post(
        URL, content=body, headers=sendgrid_signer.headers(body, int(clock.now.timestamp()))
    )
    assert response.json() == {"stored": 1, "duplicates": 0, "ignored": 1}
    assert outbox(engine, outbox_id).state == "sent"
