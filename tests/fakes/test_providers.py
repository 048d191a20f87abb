"""The fake SendGrid + Twilio server, spoken to with a plain HTTP client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes.providers import (
    SENDGRID,
    SENDGRID_API_KEY,
    TWILIO,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeProviders,
    Fault,
    FaultKind,
    running_fake_providers,
    sendgrid_errors,
)

MESSAGES = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"
AUTH = (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with running_fake_providers() as running:
        yield running


def mail(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": "jeanne@example.fr"}]}],
        "from": {"email": "marketing@spirale.example", "name": "Spirale"},
        "subject": "Bonjour",
        "content": [
            {"type": "text/plain", "value": "Bonjour"},
            {"type": "text/html", "value": "<p>Bonjour</p>"},
        ],
        "headers": {"List-Unsubscribe": "<https://spirale.example/unsubscribe/t>"},
        "categories": ["nurture"],
        "custom_args": {"outbox_id": "ob-1"},
    }
    body.update(overrides)
    return body


def send_mail(fake: FakeProviders, body: Any, key: str = SENDGRID_API_KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return requests.post(f"{fake.url}/v3/mail/send", json=body, headers=headers, timeout=5)


def send_sms(fake: FakeProviders, form: dict[str, str], auth: tuple[str, str] = AUTH) -> requests.Response:
    return requests.post(fake.url + MESSAGES, data=form, auth=auth, timeout=5)


SMS_FORM = {
    "To": "+33612345678",
    "MessagingServiceSid": "MG" + "1" * 32,
    "Body": "Bonjour. STOP au 36180",
    "StatusCallback": "https://spirale.example/webhooks/twilio/status?outbox_id=ob-9",
}


def test_sendgrid_accepts_a_valid_mail_and_records_it(fake: FakeProviders) -> None:
    response = send_mail(fake, mail())

    assert response.status_code == 202
    [record] = fake.requests(SENDGRID)
    assert response.headers["X-Message-Id"] == record.message_id
    assert (record.outbox_id, record.to, record.subject, record.body) == (
        "ob-1",
        "jeanne@example.fr",
        "Bonjour",
        "Bonjour",
    )
    assert record.headers == {"List-Unsubscribe": "<https://spirale.example/unsubscribe/t>"}
    assert record.processed


def test_sendgrid_sandbox_mode_answers_200(fake: FakeProviders) -> None:
    response = send_mail(fake, mail(mail_settings={"sandbox_mode": {"enable": True}}))

    assert response.status_code == 200


def test_sendgrid_checks_the_api_key(fake: FakeProviders) -> None:
    response = send_mail(fake, mail(), key="SG.wrong")

    assert response.status_code == 401
    assert fake.processed() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"personalizations": []}, "personalizations"),
        ({"personalizations": [{"to": [{"email": "not-an-address"}]}]}, "personalizations.0.to"),
        ({"from": {"name": "no address"}}, "from.email"),
        ({"subject": ""}, "subject"),
        (
            {"content": [{"type": "text/html", "value": "<p/>"}, {"type": "text/plain", "value": "x"}]},
            "content",
        ),
        ({"headers": {"To": "x@example.fr"}}, "headers"),
        ({"custom_args": {"outbox_id": 7}}, "custom_args"),
        ({"categories": ["a", "a"]}, "categories"),
        ({"mail_settings": {"sandbox_mode": {"enable": "yes"}}}, "mail_settings.sandbox_mode.enable"),
    ],
)
def test_sendgrid_rejects_bad_shapes_with_its_error_json(
    fake: FakeProviders, change: dict[str, Any], field: str
) -> None:
    response = send_mail(fake, mail(**change))

    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert fake.processed() == []


def test_sendgrid_validation_accepts_a_subject_per_personalization() -> None:
    body = mail(personalizations=[{"to": [{"email": "a@example.fr"}], "subject": "Salut"}])
    del body["subject"]

    assert sendgrid_errors(body) == []


def test_twilio_creates_a_realistic_message_and_looks_it_up(fake: FakeProviders) -> None:
    created = send_sms(fake, SMS_FORM)

    assert created.status_code == 201
    message = created.json()
    assert message["sid"].startswith("SM") and len(message["sid"]) == 34
    assert (message["to"], message["body"], message["num_segments"]) == (
        "+33612345678",
        SMS_FORM["Body"],
        "1",
    )
    assert message["status"] == "accepted"
    [record] = fake.requests(TWILIO)
    assert record.outbox_id == "ob-9"
    fetched = requests.get(
        fake.url + MESSAGES.replace(".json", f"/{message['sid']}.json"), auth=AUTH, timeout=5
    )
    assert fetched.json() == message


def test_twilio_lookup_of_an_unknown_message_is_20404(fake: FakeProviders) -> None:
    response = requests.get(fake.url + MESSAGES.replace(".json", "/SMmissing.json"), auth=AUTH, timeout=5)

    assert response.status_code == 404
    assert response.json()["code"] == 20404


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({**SMS_FORM, "Body": ""}, 21602),
        ({key: value for key, value in SMS_FORM.items() if key != "MessagingServiceSid"}, 21603),
        ({**SMS_FORM, "To": "0612345678"}, 21211),
    ],
)
def test_twilio_validates_the_form(fake: FakeProviders, form: dict[str, str], code: int) -> None:
    response = send_sms(fake, form)

    assert response.status_code == 400
    assert response.json() == {
        "code": code,
        "message": response.json()["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": 400,
    }


def test_twilio_checks_basic_auth(fake: FakeProviders) -> None:
    response = send_sms(fake, SMS_FORM, auth=(TWILIO_ACCOUNT_SID, "wrong"))

    assert (response.status_code, response.json()["code"]) == (401, 20003)


def test_scripted_faults_apply_in_order_per_provider(fake: FakeProviders) -> None:
    fake.script(SENDGRID, [Fault.rate_limit(reset_in=5), None, Fault.server_error(503)])

    statuses = [send_mail(fake, mail()).status_code for _ in range(4)]
    sms_status = send_sms(fake, SMS_FORM).status_code

    assert statuses == [429, 202, 503, 202]
    assert sms_status == 201
    assert [r.fault for r in fake.requests(SENDGRID)] == [
        FaultKind.RATE_LIMIT,
        None,
        FaultKind.SERVER_ERROR,
        None,
    ]


def test_sendgrid_rate_limit_carries_the_reset_epoch(fake: FakeProviders) -> None:
    fake.script(SENDGRID, [Fault.rate_limit(reset_in=5)])

    response = send_mail(fake, mail())

    assert response.status_code == 429
    assert 3 <= int(response.headers["X-RateLimit-Reset"]) - time.time() <= 6
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_recipient_faults_apply_the_given_number_of_times(fake: FakeProviders) -> None:
    fake.fail_recipient("+33699999999", Fault.opted_out(), times=1)
    form = {**SMS_FORM, "To": "+33699999999"}

    first, second = send_sms(fake, form), send_sms(fake, form)

    assert (first.status_code, first.json()["code"]) == (400, 21610)
    assert second.status_code == 201
    assert [r.processed for r in fake.requests(TWILIO)] == [False, True]


def test_slow_answers_are_recorded_before_the_client_gives_up(fake: FakeProviders) -> None:
    fake.script(SENDGRID, [Fault.slow(2.0)])

    with pytest.raises(requests.Timeout):
        requests.post(
            f"{fake.url}/v3/mail/send",
            data=json.dumps(mail()),
            headers={"Authorization": f"Bearer {SENDGRID_API_KEY}", "Content-Type": "application/json"},
            timeout=0.2,
        )

    [record] = fake.requests(SENDGRID)
    assert record.processed and record.fault is FaultKind.SLOW


@pytest.mark.parametrize(
    ("fault", "processed"),
    [(Fault.drop_unprocessed(), False), (Fault.drop_processed(), True)],
)
def test_dropped_connections_give_no_answer(fake: FakeProviders, fault: Fault, processed: bool) -> None:
    fake.script(TWILIO, [fault])

    with pytest.raises(requests.ConnectionError):
        send_sms(fake, SMS_FORM)

    assert len(fake.processed(TWILIO)) == int(processed)
    assert len(fake.requests(TWILIO)) == 1


def test_refusing_closes_the_port_then_listens_again(fake: FakeProviders) -> None:
    with fake.refusing(), pytest.raises(requests.ConnectionError, match="refused"):
        send_sms(fake, SMS_FORM)

    assert send_sms(fake, SMS_FORM).status_code == 201
    assert len(fake.requests(TWILIO)) == 1


def test_unknown_routes_are_404(fake: FakeProviders) -> None:
    assert requests.post(f"{fake.url}/v3/other", json={}, timeout=5).status_code == 404
    assert requests.get(f"{fake.url}/v3/mail/send", timeout=5).status_code == 404
