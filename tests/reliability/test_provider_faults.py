"""Provider faults against the real adapters and the fake providers: 429 with a reset, 500/503,
timeouts before and after the provider accepted, connection resets, a ten-minute outage. Retries
are bounded, the circuit breaker pauses and resumes the channel, nothing is lost or sent twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from channels.base import ChannelKind, SendOutcome, SendResult
from channels.circuit import BreakerPolicy, CircuitBreaker, CircuitOpenError, CircuitState
from models.suppressions import suppress
from spirale.errors import ChannelError, PermanentSendError, RetryableSendError, UnknownOutcomeError
from tests.fakes.providers import SENDGRID, TWILIO, FakeProviders, Fault
from tests.reliability.fault_drill import (
    CountingChannel,
    FaultDrill,
    adapters,
    black_hole,
    mixed_faults_drill,
    outage_drill,
)
from tests.reliability.ledger import OUTBOX, seed_relay

POLICY = BreakerPolicy(failure_threshold=3, cooldown=60, max_cooldown=300, chunk=2)
UNWELL = UnknownOutcomeError("503", channel="fake")
REFUSED = RetryableSendError("connection refused", channel="fake")


class ScriptedChannel:
    """An in-memory provider that answers each message with the next scripted error (or success)."""

    name = "fake"
    kind = ChannelKind.EMAIL

    def __init__(self, script: Sequence[ChannelError | None] = ()) -> None:
        self.script = list(script)
        self.calls = 0

    def send(self, message: Any) -> SendResult:
        self.calls += 1
        error = self.script.pop(0) if self.script else None
        if error is not None:
            raise error
        return SendResult(f"id-{message.outbox_id}")

    def send_many(self, messages: Sequence[Any]) -> list[SendOutcome]:
        outcomes = []
        for message in messages:
            try:
                outcomes.append(SendOutcome(message.outbox_id, self.send(message), None))
            except ChannelError as exc:
                outcomes.append(SendOutcome(message.outbox_id, None, exc))
        return outcomes


class Message:
    def __init__(self, outbox_id: str) -> None:
        self.outbox_id = outbox_id


def messages(n: int) -> list[Message]:
    return [Message(str(i)) for i in range(n)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the breaker on its own ------------------------------------------------------------------------
def test_breaker_opens_after_consecutive_failures_and_then_fails_fast_with_retry_after() -> None:
    inner, clock = ScriptedChannel([UNWELL, REFUSED, UNWELL, UNWELL]), Clock()
    breaker = CircuitBreaker(inner, policy=POLICY, clock=clock)
    outcomes = breaker.send_many(messages(10))
    assert inner.calls == 4  # two chunks of two: the threshold is crossed inside the second
    assert breaker.state is CircuitState.OPEN
    fast = [o.error for o in outcomes[4:]]
    assert all(isinstance(e, CircuitOpenError) and e.retry_after == 60 for e in fast)
    clock.now += 20
    [later] = breaker.send_many(messages(1))
    assert isinstance(later.error, CircuitOpenError) and later.error.retry_after == 40
    assert inner.calls == 4


def test_breaker_half_opens_after_the_cooldown_probes_once_and_closes_on_success() -> None:
    inner, clock = ScriptedChannel([UNWELL] * 3), Clock()
    breaker = CircuitBreaker(inner, policy=POLICY, clock=clock)
    breaker.send_many(messages(3))
    clock.now += 60
    states = [breaker.state]
    outcomes = breaker.send_many(messages(5))
    states.append(breaker.state)
    assert states == [CircuitState.HALF_OPEN, CircuitState.CLOSED]
    assert [o.ok for o in outcomes] == [True] * 5
    assert inner.calls == 8


def test_a_failed_probe_reopens_with_a_doubled_cooldown_capped() -> None:
    inner, clock = ScriptedChannel([REFUSED] * 20), Clock()
    breaker = CircuitBreaker(inner, policy=POLICY, clock=clock)
    breaker.send_many(messages(3))
    cooldowns: list[float | None] = []
    for _ in range(4):
        clock.now += 1000
        outcomes = breaker.send_many(messages(4))
        assert inner.calls == 3 + len(cooldowns) + 1  # one probe, the other three fail fast
        cooldowns.append(outcomes[1].error.retry_after)  # type: ignore[union-attr]
    assert cooldowns == [120, 240, 300, 300]
    assert breaker.opened == 5


def test_a_message_refused_as_the_circuit_opens_waits_for_the_probe_too() -> None:
    inner, clock = ScriptedChannel([REFUSED] * 4), Clock()
    breaker = CircuitBreaker(inner, policy=POLICY, clock=clock)
    outcomes = breaker.send_many(messages(4))
    assert [o.error.retry_after for o in outcomes] == [None, None, 60, 60]  # type: ignore[union-attr]
    assert isinstance(outcomes[2].error, RetryableSendError)
    assert not isinstance(outcomes[2].error, CircuitOpenError)


def test_permanent_refusals_prove_the_provider_is_up() -> None:
    refusal = PermanentSendError("invalid number", channel="fake")
    inner = ScriptedChannel([UNWELL, UNWELL, refusal, UNWELL, UNWELL])
    breaker = CircuitBreaker(inner, policy=POLICY, clock=Clock())
    breaker.send_many(messages(5))
    assert breaker.state is CircuitState.CLOSED and breaker.opened == 0


def test_a_rate_limit_with_a_reset_pauses_until_the_reset() -> None:
    limited = RetryableSendError("429", channel="fake", status_code=429, retry_after=150)
    inner, clock = ScriptedChannel([limited]), Clock()
    breaker = CircuitBreaker(inner, policy=POLICY, clock=clock)
    outcomes = breaker.send_many(messages(3))
    assert inner.calls == 2  # the second message of the chunk was already on its way
    assert outcomes[1].ok and breaker.state is CircuitState.OPEN
    assert isinstance(outcomes[2].error, CircuitOpenError) and outcomes[2].error.retry_after == 150
    clock.now += 150
    assert [o.ok for o in breaker.send_many(messages(2))] == [True, True]


def test_the_breaker_is_a_channel_with_the_name_and_kind_of_the_one_it_wraps() -> None:
    breaker = CircuitBreaker(CountingChannel(ScriptedChannel()), clock=Clock())
    assert (breaker.name, breaker.kind) == ("fake", ChannelKind.EMAIL)
    assert breaker.send(Message("1")).provider_message_id == "id-1"


# -- the whole dispatch path against the fake providers ---------------------------------------------
def assert_each_due_step_received_once(drill: FaultDrill, expected: int) -> None:
    result = drill.result(started=0.0).audit
    assert (result.duplicates, result.losses, result.problems) == (0, 0, [])
    assert result.expected == result.processed == expected


@pytest.mark.db
def test_a_429_with_reset_is_retried_after_the_reset_and_sent_once(
    engine: Engine, fake: FakeProviders
) -> None:
    seed_relay(engine, 4)
    fake.script(SENDGRID, [Fault.rate_limit(reset_in=120)])
    fake.script(TWILIO, [Fault.rate_limit(), Fault.rate_limit()])
    drill = FaultDrill(engine, fake, policy=POLICY)
    report = drill.tick()
    # The first got the 429 and paused the channel; the second was already on its way.
    assert (report.failed, report.sent) == ({"email": 3}, {"email": 1})
    drill.drain()
    assert_each_due_step_received_once(drill, 12)
    assert len(fake.requests()) == 12 + 3  # exactly the three refused requests on top
    with engine.connect() as conn:
        assert conn.scalar(select(func.max(OUTBOX.c.attempt))) == 2


@pytest.mark.db
def test_500_and_503_answers_are_held_unknown_and_reconciled_never_resent_blindly(
    engine: Engine, fake: FakeProviders
) -> None:
    seed_relay(engine, 3)
    fake.script(SENDGRID, [Fault.server_error(500, processed=True), Fault.server_error(503)])
    fake.script(TWILIO, [Fault.server_error(503, processed=True)])
    drill = FaultDrill(engine, fake, policy=POLICY)
    assert drill.tick().unknown == {"email": 2}
    drill.drain()
    assert_each_due_step_received_once(drill, 9)
    assert len(fake.requests()) == 9 + 1  # only the unprocessed 503 was sent again


@pytest.mark.db
def test_timeouts_before_and_after_the_provider_accepted(engine: Engine, fake: FakeProviders) -> None:
    seed_relay(engine, 2)
    drill = FaultDrill(engine, fake, policy=POLICY)
    real_email = drill.channels["email"]
    with black_hole() as url:
        drill.channels["email"] = adapters(url)["email"]
        assert drill.tick().unknown == {"email": 2}  # never reached the provider
    drill.channels["email"] = real_email
    fake.script(SENDGRID, [Fault.slow(1.0)])  # accepted, then the answer comes too late
    drill.drain()
    assert_each_due_step_received_once(drill, 6)
    assert sum(1 for r in fake.requests() if r.fault is not None) == 1


@pytest.mark.db
def test_connection_resets_before_and_after_the_provider_processed(
    engine: Engine, fake: FakeProviders
) -> None:
    seed_relay(engine, 2)
    fake.script(SENDGRID, [Fault.drop_unprocessed(), Fault.drop_processed()])
    fake.script(TWILIO, [Fault.drop_processed(), Fault.drop_unprocessed()])
    drill = FaultDrill(engine, fake, policy=POLICY)
    drill.drain()
    assert_each_due_step_received_once(drill, 6)


@pytest.mark.db
def test_a_ten_minute_outage_pauses_the_channel_then_drains_with_nothing_lost(
    engine: Engine, fake: FakeProviders
) -> None:
    seed_relay(engine, 30)
    result = outage_drill(engine, fake, outage=timedelta(minutes=10))
    print("\n".join(result.lines("ten-minute outage")))
    a = result.audit
    assert (a.duplicates, a.losses, a.problems) == (0, 0, [])
    assert a.processed == a.expected == 90
    assert result.breaker_openings >= 4  # opened, then each failed probe re-opened it
    # Per channel, the outage cost one chunk of real requests plus one probe per cool-down, not one
    # request per message and attempt.
    assert result.attempted <= a.expected + 2 * (BreakerPolicy().chunk + 5)
    # Retries back off exponentially (1, 2, 4, 8 min...): the wait after recovery stays below the
    # outage itself, plus one backoff step.
    assert result.drain_after_recovery is not None
    assert result.drain_after_recovery <= timedelta(minutes=10 + 2)
    with engine.connect() as conn:
        assert (conn.scalar(select(func.max(OUTBOX.c.attempt))) or 0) <= 5


@pytest.mark.db
def test_a_half_hour_outage_loses_nothing_either(engine: Engine, fake: FakeProviders) -> None:
    seed_relay(engine, 5)
    result = outage_drill(engine, fake, outage=timedelta(minutes=30))
    a = result.audit
    assert (a.duplicates, a.losses, a.problems) == (0, 0, [])
    assert a.processed == a.expected == 15


@pytest.mark.db
def test_a_suppression_arriving_while_a_send_waits_for_its_retry_blocks_it(
    engine: Engine, fake: FakeProviders
) -> None:
    seed_relay(engine, 1)
    fake.script(SENDGRID, [Fault.rate_limit(reset_in=120)])
    drill = FaultDrill(engine, fake, policy=POLICY)
    assert drill.tick().failed == {"email": 1}
    [request] = fake.requests(SENDGRID)
    with engine.begin() as conn:
        suppress(
            conn,
            channel="email",
            address=str(request.to),
            reason="unsubscribe",
            source="test",
            now=drill.clock.now,
        )
    drill.clock.now += timedelta(minutes=5)
    report = drill.tick()
    assert (report.retried, report.suppressed) == (1, {"email": 1})
    assert fake.processed(SENDGRID) == []
    with engine.connect() as conn:
        states = conn.execute(
            select(OUTBOX.c.attempt, OUTBOX.c.state).where(OUTBOX.c.channel == "email")
        ).all()
    assert sorted(tuple(s) for s in states) == [(1, "failed"), (2, "suppressed")]


@pytest.mark.db
@pytest.mark.parametrize("seed", [3, 11])
def test_random_faults_on_a_quarter_of_requests_lose_and_duplicate_nothing(
    engine: Engine, fake: FakeProviders, seed: int
) -> None:
    seed_relay(engine, 10)
    result = mixed_faults_drill(engine, fake, seed=seed)
    a = result.audit
    assert (a.duplicates, a.losses, a.problems) == (0, 0, [])
    assert a.processed == a.expected == 30
    assert a.requests > a.processed  # faults were met, and retried where the provider allows it
