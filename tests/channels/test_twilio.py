"""The Twilio channel, through the real SDK, against the fake Twilio over loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from channels.base import SendOutcome, SmsMessage
from channels.retry import RetryPolicy
from channels.twilio import TokenBucket, TwilioSms
from spirale.errors import PermanentSendError, RetryableSendError, UnknownOutcomeError
from tests.fakes.providers import (
    TWILIO,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeProviders,
    Fault,
    running_fake_providers,
)

SERVICE_SID = "MG" + "1" * 32
CALLBACK = "https://spirale.example/webhooks/twilio/status?outbox_id={}"


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with running_fake_providers() as running:
        yield running


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def sms(
    outbox_id: str = "ob-1", to: str = "+33612345678", body: str = "Webinar jeudi 10h. STOP au 36180"
) -> SmsMessage:
    return SmsMessage(outbox_id=outbox_id, to=to, body=body, status_callback=CALLBACK.format(outbox_id))


def channel(fake: FakeProviders, *, sleeps: list[float] | None = None, **options: object) -> TwilioSms:
    recorded = sleeps if sleeps is not None else []
    retry = RetryPolicy(max_attempts=3, base=0.5, sleep=recorded.append, rand=lambda: 0.5)
    settings: dict[str, object] = {
        "messaging_service_sid": SERVICE_SID,
        "base_url": fake.url,
        "per_second": 1000.0,
        "timeout": 2.0,
        "retry": retry,
    } | options
    return TwilioSms(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, **settings)  # type: ignore[arg-type]


def only_outcome(outcomes: list[SendOutcome]) -> SendOutcome:
    assert len(outcomes) == 1
    return outcomes[0]


def test_send_posts_the_message_with_its_status_callback(fake: FakeProviders) -> None:
    result = channel(fake).send(sms())

    [request] = fake.requests(TWILIO)
    assert request.payload == {
        "To": "+33612345678",
        "Body": "Webinar jeudi 10h. STOP au 36180",
        "MessagingServiceSid": SERVICE_SID,
        "StatusCallback": CALLBACK.format("ob-1"),
    }
    assert request.outbox_id == "ob-1"
    assert request.status == 201
    assert result.provider_message_id == request.message_id
    assert result.provider_message_id is not None and result.provider_message_id.startswith("SM")
    assert result.segments == 1


def test_a_from_number_is_used_without_a_messaging_service(fake: FakeProviders) -> None:
    channel(fake, messaging_service_sid=None, from_="+15005550006").send(sms())

    payload = fake.requests(TWILIO)[0].payload
    assert payload["From"] == "+15005550006"
    assert "MessagingServiceSid" not in payload


def test_segments_follow_the_encoding(fake: FakeProviders) -> None:
    # "ç" is not GSM-7: the message switches to UCS-2, 70 characters per single segment.
    result = channel(fake).send(sms(body="Leçon " + "x" * 70))

    assert result.segments == 2
    assert fake.requests(TWILIO)[0].payload["Body"].startswith("Leçon")


def test_rate_limit_20429_is_retried_then_succeeds(fake: FakeProviders) -> None:
    fake.script(TWILIO, [Fault.rate_limit()])
    sleeps: list[float] = []

    outcome = only_outcome(channel(fake, sleeps=sleeps).send_many([sms()]))

    assert outcome.ok
    assert sleeps == [0.25]  # full jitter: rand 0.5 of base 0.5
    assert len(fake.requests(TWILIO)) == 2
    assert len(fake.processed(TWILIO)) == 1


def test_rate_limit_exhausted_is_retryable(fake: FakeProviders) -> None:
    fake.script(TWILIO, [Fault.rate_limit()] * 3)

    outcome = only_outcome(channel(fake).send_many([sms()]))

    assert isinstance(outcome.error, RetryableSendError)
    assert outcome.error.provider_code == "20429"
    assert len(fake.requests(TWILIO)) == 3
    assert fake.processed(TWILIO) == []


def test_opted_out_recipient_is_permanent_and_suppressed(fake: FakeProviders) -> None:
    fake.fail_recipient("+33699999999", Fault.opted_out())

    outcomes = channel(fake).send_many([sms("ob-1"), sms("ob-2", to="+33699999999")])

    assert outcomes[0].ok
    error = outcomes[1].error
    assert isinstance(error, PermanentSendError)
    assert error.suppress_address
    assert error.provider_code == "21610"
    assert len(fake.requests(TWILIO)) == 2


@pytest.mark.parametrize("code", [21211, 21614, 21408])
def test_invalid_numbers_are_permanent_without_suppression(fake: FakeProviders, code: int) -> None:
    fake.script(TWILIO, [Fault.reject(400, code, "refused")])

    outcome = only_outcome(channel(fake).send_many([sms()]))

    assert isinstance(outcome.error, PermanentSendError)
    assert not outcome.error.suppress_address
    assert outcome.error.provider_code == str(code)
    assert len(fake.requests(TWILIO)) == 1


def test_a_malformed_number_is_refused_by_twilio_as_21211(fake: FakeProviders) -> None:
    with pytest.raises(PermanentSendError, match="21211"):
        channel(fake).send(sms(to="0612345678"))


def test_server_error_is_unknown_and_not_resent(fake: FakeProviders) -> None:
    fake.script(TWILIO, [Fault.server_error(503)])

    outcome = only_outcome(channel(fake).send_many([sms()]))

    assert isinstance(outcome.error, UnknownOutcomeError)
    assert outcome.error.status_code == 503
    assert len(fake.requests(TWILIO)) == 1


def test_timeout_is_unknown_and_the_message_reached_twilio_once(fake: FakeProviders) -> None:
    fake.script(TWILIO, [Fault.slow(1.5)])

    outcome = only_outcome(channel(fake, timeout=0.2).send_many([sms()]))

    assert isinstance(outcome.error, UnknownOutcomeError)
    assert [r.outbox_id for r in fake.processed(TWILIO)] == ["ob-1"]
    assert len(fake.requests(TWILIO)) == 1


def test_refused_connection_is_retried_then_sent_once(fake: FakeProviders) -> None:
    fake.pause()
    sleeps: list[float] = []

    def sleep_then_come_back(seconds: float) -> None:
        sleeps.append(seconds)
        fake.resume()

    retry = RetryPolicy(max_attempts=3, sleep=sleep_then_come_back)
    outcome = only_outcome(channel(fake, retry=retry).send_many([sms()]))

    assert outcome.ok
    assert len(sleeps) == 1
    assert len(fake.processed(TWILIO)) == 1


def test_connection_dropped_after_processing_is_unknown(fake: FakeProviders) -> None:
    fake.script(TWILIO, [Fault.drop_processed()])

    outcome = only_outcome(channel(fake).send_many([sms()]))

    assert isinstance(outcome.error, UnknownOutcomeError)
    assert len(fake.requests(TWILIO)) == 1


def test_wrong_credentials_are_permanent(fake: FakeProviders) -> None:
    wrong = TwilioSms(TWILIO_ACCOUNT_SID, "wrong-token", from_="+15005550006", base_url=fake.url)

    with pytest.raises(PermanentSendError, match="20003"):
        wrong.send(sms())


def test_message_status_looks_the_message_up(fake: FakeProviders) -> None:
    twilio = channel(fake)
    sid = twilio.send(sms()).provider_message_id
    assert sid is not None

    assert twilio.message_status(sid) == "accepted"
    with pytest.raises(PermanentSendError, match="20404"):
        twilio.message_status("SM" + "0" * 32)


def test_pacing_spaces_sends_at_the_sender_rate(fake: FakeProviders) -> None:
    clock = FakeClock()
    twilio = channel(fake, per_second=50.0, concurrency=1, clock=clock, sleep=clock.sleep)
    messages = [sms(f"ob-{i}") for i in range(11)]
    start = clock()

    outcomes = twilio.send_many(messages)

    assert all(o.ok for o in outcomes)
    assert clock() - start >= (len(messages) - 1) / 50 - 1e-9
    assert clock.sleeps == pytest.approx([1 / 50] * 10)
    assert len(fake.processed(TWILIO)) == 11


def test_send_many_respects_the_concurrency_bound(fake: FakeProviders) -> None:
    fake.latency = 0.05
    messages = [sms(f"ob-{i}") for i in range(10)]

    outcomes = channel(fake, concurrency=3).send_many(messages)

    assert all(o.ok for o in outcomes)
    assert 2 <= fake.max_in_flight <= 3
    assert sorted(r.outbox_id or "" for r in fake.processed(TWILIO)) == sorted(m.outbox_id for m in messages)


def test_token_bucket_is_thread_safe_with_the_real_clock() -> None:
    bucket = TokenBucket(200.0)
    start = time.monotonic()

    def take(count: int) -> None:
        for _ in range(count):
            bucket.acquire()

    threads = [threading.Thread(target=take, args=(5,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert time.monotonic() - start >= 19 / 200


def test_token_bucket_allows_its_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=3, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        bucket.acquire()

    assert clock.sleeps == pytest.approx([0.1, 0.1])


def test_a_sender_is_required() -> None:
    with pytest.raises(ValueError, match="messaging service"):
        TwilioSms(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
