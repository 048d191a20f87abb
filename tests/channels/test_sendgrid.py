"""The SendGrid channel, through the real SDK, against the fake SendGrid over loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import EmailMessage, SendOutcome
from channels.retry import RetryPolicy
from channels.sendgrid import SendGridEmail
from channels.unsubscribe import list_unsubscribe_headers
from spirale.errors import PermanentSendError, RetryableSendError, UnknownOutcomeError
from tests.fakes.providers import SENDGRID, SENDGRID_API_KEY, FakeProviders, Fault, running_fake_providers

UNSUBSCRIBE = list_unsubscribe_headers(
    "https://spirale.example/unsubscribe/tok", "unsubscribe@spirale.example"
)


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with running_fake_providers() as running:
        yield running


def email(outbox_id: str = "ob-1", to: str = "jeanne@example.fr", **overrides: object) -> EmailMessage:
    fields: dict[str, object] = {
        "outbox_id": outbox_id,
        "to": to,
        "subject": "Votre livre blanc, Jeanne",
        "html": "<p>Bonjour Jeanne</p>",
        "text": "Bonjour Jeanne",
        "from_email": "marketing@spirale.example",
        "from_name": "Équipe Spirale",
        "headers": UNSUBSCRIBE,
        "categories": ("whitepaper-nurture", "whitepaper-nurture/welcome"),
        "custom_args": {"lead_id": "lead-42"},
    }
    fields.update(overrides)
    return EmailMessage(**fields)  # type: ignore[arg-type]


class Sleeps(list[float]):
    """An injected sleep that only remembers what it was asked to wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def channel(fake: FakeProviders, *, sleeps: Sleeps | None = None, **options: object) -> SendGridEmail:
    sleep = sleeps if sleeps is not None else Sleeps()
    retry = RetryPolicy(max_attempts=3, base=0.5, cap=30.0, sleep=sleep, rand=lambda: 0.5)
    settings: dict[str, object] = {"host": fake.url, "timeout": 2.0, "retry": retry} | options
    return SendGridEmail(SENDGRID_API_KEY, **settings)  # type: ignore[arg-type]


def only_outcome(outcomes: list[SendOutcome]) -> SendOutcome:
    assert len(outcomes) == 1
    return outcomes[0]


def test_send_posts_headers_categories_and_custom_args(fake: FakeProviders) -> None:
    result = channel(fake).send(email())

    [request] = fake.requests(SENDGRID)
    assert request.processed and request.status == 202
    assert result.provider_message_id == request.message_id
    payload = request.payload
    assert payload["from"] == {"email": "marketing@spirale.example", "name": "Équipe Spirale"}
    assert payload["personalizations"] == [{"to": [{"email": "jeanne@example.fr"}]}]
    assert payload["subject"] == "Votre livre blanc, Jeanne"
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert payload["headers"] == UNSUBSCRIBE
    assert sorted(payload["categories"]) == ["whitepaper-nurture", "whitepaper-nurture/welcome"]
    assert payload["custom_args"] == {"outbox_id": "ob-1", "lead_id": "lead-42"}
    assert "mail_settings" not in payload
    assert request.outbox_id == "ob-1"


def test_outbox_id_always_travels_in_custom_args(fake: FakeProviders) -> None:
    channel(fake).send(email(outbox_id="ob-7", custom_args={"outbox_id": "stale"}))

    assert fake.requests(SENDGRID)[0].payload["custom_args"]["outbox_id"] == "ob-7"


def test_sandbox_mode_sets_the_flag(fake: FakeProviders) -> None:
    result = channel(fake, sandbox=True).send(email())

    [request] = fake.requests(SENDGRID)
    assert request.payload["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert request.status == 200
    assert result.provider_message_id == request.message_id


def test_rate_limit_is_retried_with_backoff_then_succeeds(fake: FakeProviders) -> None:
    fake.script(SENDGRID, [Fault.rate_limit(reset_in=1), Fault.rate_limit(reset_in=1)])
    sleeps = Sleeps()

    outcome = only_outcome(channel(fake, sleeps=sleeps).send_many([email()]))

    assert outcome.ok
    assert len(fake.requests(SENDGRID)) == 3
    assert len(fake.processed(SENDGRID)) == 1
    # retry_after (until X-RateLimit-Reset, at most 1 s) plus full jitter (rand=0.5 of 0.5 s, then of 1 s).
    assert len(sleeps) == 2
    assert 0.25 < sleeps[0] <= 1.25
    assert 0.5 < sleeps[1] <= 1.5


def test_rate_limit_exhausted_surfaces_a_retryable_error(fake: FakeProviders) -> None:
    fake.script(SENDGRID, [Fault.rate_limit(reset_in=2)] * 3)
    sleeps = Sleeps()

    outcome = only_outcome(channel(fake, sleeps=sleeps).send_many([email()]))

    assert isinstance(outcome.error, RetryableSendError)
    assert outcome.error.status_code == 429
    assert outcome.error.retry_after is not None and 0 < outcome.error.retry_after <= 2
    assert len(sleeps) == 2
    assert len(fake.requests(SENDGRID)) == 3
    assert fake.processed(SENDGRID) == []


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_is_unknown_and_never_resent(fake: FakeProviders, status: int) -> None:
    fake.script(SENDGRID, [Fault.server_error(status, processed=True)])

    outcome = only_outcome(channel(fake).send_many([email()]))

    assert isinstance(outcome.error, UnknownOutcomeError)
    assert outcome.error.status_code == status
    assert len(fake.requests(SENDGRID)) == 1


def test_timeout_after_sending_is_unknown_and_reached_the_provider_once(fake: FakeProviders) -> None:
    fake.script(SENDGRID, [Fault.slow(1.5)])

    outcome = only_outcome(channel(fake, timeout=0.2).send_many([email()]))

    assert isinstance(outcome.error, UnknownOutcomeError)
    assert [r.outbox_id for r in fake.requests(SENDGRID)] == ["ob-1"]
    assert len(fake.processed(SENDGRID)) == 1


def test_connection_dropped_after_processing_is_unknown(fake: FakeProviders) -> None:
    fake.script(SENDGRID, [Fault.drop_processed()])

    outcome = only_outcome(channel(fake).send_many([email()]))

    assert isinstance(outcome.error, UnknownOutcomeError)
    assert len(fake.requests(SENDGRID)) == 1


def test_connection_dropped_before_reading_never_duplicates(fake: FakeProviders) -> None:
    # Once the request is written the client cannot tell "dropped unread" from "dropped after
    # processing": it must answer unknown (or retryable, in the rare race where the reset beats the
    # write). Either way the provider ends up with at most one copy.
    fake.script(SENDGRID, [Fault.drop_unprocessed()])

    outcome = only_outcome(channel(fake).send_many([email()]))

    processed = fake.processed(SENDGRID)
    assert outcome.ok == (len(processed) == 1)
    assert outcome.ok or isinstance(outcome.error, UnknownOutcomeError)
    assert len(processed) <= 1


def test_refused_connection_is_retried_then_sent_once(fake: FakeProviders) -> None:
    fake.pause()
    sleeps = Sleeps()

    def sleep_then_come_back(seconds: float) -> None:
        sleeps(seconds)
        fake.resume()

    outcome = only_outcome(channel(fake, sleeps=sleep_then_come_back).send_many([email()]))  # type: ignore[arg-type]

    assert outcome.ok
    assert len(sleeps) == 1
    assert len(fake.requests(SENDGRID)) == 1


def test_refused_connection_is_retryable(fake: FakeProviders) -> None:
    with fake.refusing(), pytest.raises(RetryableSendError, match="before sending"):
        channel(fake).send(email())


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.reject(400, None, "bad"), 400), (Fault.reject(403, None, "from not verified"), 403)],
)
def test_rejections_are_permanent(fake: FakeProviders, fault: Fault, status: int) -> None:
    fake.script(SENDGRID, [fault])

    outcome = only_outcome(channel(fake).send_many([email()]))

    assert isinstance(outcome.error, PermanentSendError)
    assert outcome.error.status_code == status
    assert not outcome.error.suppress_address
    assert len(fake.requests(SENDGRID)) == 1


def test_a_payload_sendgrid_refuses_is_permanent_with_its_message(fake: FakeProviders) -> None:
    reserved = email(headers={**UNSUBSCRIBE, "Reply-To": "x@example.fr"})

    with pytest.raises(PermanentSendError, match="reserved header") as caught:
        channel(fake).send(reserved)

    assert caught.value.status_code == 400


def test_a_wrong_api_key_is_permanent(fake: FakeProviders) -> None:
    wrong = SendGridEmail("SG.wrong.key", host=fake.url)

    with pytest.raises(PermanentSendError) as caught:
        wrong.send(email())

    assert caught.value.status_code == 401


def test_content_that_looks_like_an_api_key_is_refused_before_sending(fake: FakeProviders) -> None:
    with pytest.raises(PermanentSendError, match="API key"):
        channel(fake).send(email(text="SG.abcdefgh.ijklmnop is the key"))

    assert fake.requests() == []


def test_send_many_respects_the_concurrency_bound(fake: FakeProviders) -> None:
    fake.latency = 0.05
    messages = [email(outbox_id=f"ob-{i}", to=f"lead{i}@example.fr") for i in range(12)]

    outcomes = channel(fake, concurrency=3).send_many(messages)

    assert [o.outbox_id for o in outcomes] == [m.outbox_id for m in messages]
    assert all(o.ok for o in outcomes)
    assert 2 <= fake.max_in_flight <= 3
    assert sorted(r.outbox_id or "" for r in fake.processed()) == sorted(m.outbox_id for m in messages)


def test_one_failure_does_not_stop_the_batch(fake: FakeProviders) -> None:
    fake.fail_recipient("bad@example.fr", Fault.reject(400, None, "bounced"))
    messages = [email("ob-1"), email("ob-2", to="bad@example.fr"), email("ob-3")]

    outcomes = channel(fake, concurrency=2).send_many(messages)

    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, PermanentSendError)


# The backoff policy every channel's send_many follows.


@given(attempt=st.integers(1, 200), rand=st.floats(0, 1, exclude_max=True))
def test_full_jitter_stays_within_the_capped_exponential(attempt: int, rand: float) -> None:
    policy = RetryPolicy(max_attempts=500, base=0.5, cap=20.0, rand=lambda: rand)

    delay = policy.backoff(attempt)

    assert 0 <= delay <= min(20.0, 0.5 * 2 ** (attempt - 1))


def test_a_retry_after_beyond_the_cap_is_not_waited_out_in_process() -> None:
    policy = RetryPolicy(max_attempts=5, base=0.5, cap=10.0)
    error = RetryableSendError("slow down", channel="sendgrid", retry_after=60.0)

    assert policy.delay_before_retry(1, error) is None
    assert policy.delay_before_retry(5, RetryableSendError("x", channel="sendgrid")) is None


def test_only_retryable_errors_are_retried() -> None:
    calls: list[int] = []

    def unknown() -> None:
        calls.append(1)
        raise UnknownOutcomeError("maybe sent", channel="sendgrid")

    with pytest.raises(UnknownOutcomeError):
        RetryPolicy(max_attempts=5, sleep=Sleeps()).call(unknown)
    assert calls == [1]
