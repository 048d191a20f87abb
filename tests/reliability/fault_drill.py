"""Provider-fault drills, in process: the real SendGrid/Twilio adapters aimed at the fake providers,
each behind a circuit breaker, driven by a simulated clock that the dispatcher and the breakers
share. A ten-minute outage costs a few seconds of wall time.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from channels.base import AnyChannel, ChannelKind, SendOutcome
from channels.circuit import BreakerPolicy, CircuitBreaker
from channels.retry import RetryPolicy
from channels.sendgrid import SendGridEmail
from channels.twilio import TwilioSms
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher, DispatchReport
from spirale.settings import Settings
from tests.fakes.providers import (
    SENDGRID,
    SENDGRID_API_KEY,
    TWILIO,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeProviders,
    Fault,
)
from tests.reliability.ledger import (
    ENROLLMENTS,
    FIXTURES,
    RELAY_STEPS,
    T0,
    Audit,
    audit,
    backlog,
    next_wakeup,
    quiescent,
    reconcile_from_provider,
)

TICK = timedelta(seconds=30)
LEASE = timedelta(seconds=5)


@dataclass
class SimClock:
    """The simulated instant shared by the dispatcher (``now``) and the breakers (seconds)."""

    now: datetime = T0

    def seconds(self) -> float:
        return self.now.timestamp()


class CountingChannel:
    """Counts the messages handed to a provider adapter: the sends actually attempted."""

    def __init__(self, inner: AnyChannel) -> None:
        self.inner = inner
        self.attempted = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def kind(self) -> ChannelKind:
        return self.inner.kind

    def send(self, message: Any) -> Any:
        self.attempted += 1
        return self.inner.send(message)

    def send_many(self, messages: Sequence[Any]) -> list[SendOutcome]:
        self.attempted += len(messages)
        return self.inner.send_many(messages)


def adapters(url: str, *, timeout: float = 0.3) -> dict[str, AnyChannel]:
    """SendGrid and Twilio adapters aimed at ``url``; in-process retries never sleep for real."""
    retry = RetryPolicy(max_attempts=3, base=0.01, cap=30.0, sleep=lambda _seconds: None)
    email = SendGridEmail(SENDGRID_API_KEY, host=url, concurrency=4, timeout=timeout, retry=retry)
    sms = TwilioSms(
        TWILIO_ACCOUNT_SID,
        TWILIO_AUTH_TOKEN,
        from_="+33700000001",
        base_url=url,
        per_second=10_000,
        concurrency=4,
        timeout=timeout,
        retry=retry,
    )
    return {"email": email, "sms": sms}


@dataclass
class DrillResult:
    """Figures of a drill: what was attempted, what the provider got, how fast it recovered."""

    audit: Audit
    attempted: int
    ticks: int
    breaker_openings: int
    drain_after_recovery: timedelta | None  # provider back -> no row waiting for a retry
    simulated: timedelta
    wall_seconds: float

    def lines(self, title: str) -> list[str]:
        a = self.audit
        simulated = f"{self.simulated.total_seconds():.0f} s"
        timing = f"drained in {simulated} simulated"
        if self.drain_after_recovery is not None:
            timing = (
                f"time to drain after recovery: {self.drain_after_recovery.total_seconds():.0f} s simulated"
            )
        return [
            f"{title}: {a.expected} due steps, {self.ticks} dispatch ticks,"
            f" breaker opened {self.breaker_openings}x",
            f"  sends attempted {self.attempted} (outbox attempts {a.attempts},"
            f" provider requests {a.requests}), processed {a.processed}",
            f"  duplicates {a.duplicates}, losses {a.losses}, inconsistencies {len(a.problems)}",
            f"  {timing}; whole drill {simulated} simulated, {self.wall_seconds:.1f} s wall",
        ]


@dataclass
class FaultDrill:
    """A dispatcher over breakers over counting adapters, and the loop that drives them."""

    engine: Engine
    fake: FakeProviders
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    max_attempts: int = 5
    clock: SimClock = field(default_factory=SimClock)

    def __post_init__(self) -> None:
        self.counters = {kind: CountingChannel(c) for kind, c in adapters(self.fake.url).items()}
        self.breakers = {
            kind: CircuitBreaker(counter, policy=self.policy, clock=self.clock.seconds)
            for kind, counter in self.counters.items()
        }
        # A plain dict the dispatcher and its recorder share: ``route`` swaps an adapter in place.
        self.channels: dict[str, AnyChannel] = dict(self.breakers)
        settings = Settings(
            sequences_dir=FIXTURES,
            public_url="https://spirale.example",
            secret_key="reliability-secret",
            claim_lease_seconds=int(LEASE.total_seconds()),
            frequency_cap_count=10,
            send_max_attempts=self.max_attempts,
        )
        self.dispatcher = Dispatcher(
            engine=self.engine,
            catalog=SequenceCatalog.open(FIXTURES),
            channels=self.channels,
            settings=settings,
        )
        self.ticks = 0

    def tick(self) -> DispatchReport:
        """Reconcile ``unknown`` rows from the provider's record, then dispatch at the clock."""
        reconcile_from_provider(self.engine, self.fake, now=self.clock.now)
        self.ticks += 1
        return self.dispatcher.dispatch_due(now=self.clock.now)

    def run_for(self, duration: timedelta, step: timedelta = TICK) -> None:
        """Tick every ``step`` for ``duration`` of simulated time."""
        end = self.clock.now + duration
        while self.clock.now < end:
            self.tick()
            self.clock.now += step

    def drain(self, *, limit: int = 400) -> datetime:
        """Tick until nothing is left to do, jumping to the next instant with work (at most one
        ``TICK`` ahead); returns when the backlog of retries and reconciliations was cleared."""
        cleared: datetime | None = None
        for _ in range(limit):
            reconcile_from_provider(self.engine, self.fake, now=self.clock.now)
            if cleared is None and backlog(self.engine) == 0:
                cleared = self.clock.now
            if quiescent(self.engine):
                return cleared or self.clock.now
            self.tick()
            wakeup = next_wakeup(self.engine, self.clock.now, LEASE)
            self.clock.now = min(wakeup, self.clock.now + TICK)
        raise AssertionError(f"the drill did not drain in {limit} ticks")

    def result(
        self, *, started: float, recovered_at: datetime | None = None, cleared_at: datetime | None = None
    ) -> DrillResult:
        return DrillResult(
            audit=audit(self.engine, self.fake),
            attempted=sum(c.attempted for c in self.counters.values()),
            ticks=self.ticks,
            breaker_openings=sum(b.opened for b in self.breakers.values()),
            drain_after_recovery=None
            if recovered_at is None or cleared_at is None
            else cleared_at - recovered_at,
            simulated=self.clock.now - T0,
            wall_seconds=time.perf_counter() - started,
        )


def outage_drill(
    engine: Engine, fake: FakeProviders, *, outage: timedelta, max_attempts: int = 5
) -> DrillResult:
    """Both providers refuse every connection for ``outage``, then answer again."""
    started = time.perf_counter()
    drill = FaultDrill(engine, fake, max_attempts=max_attempts)
    with fake.refusing():
        drill.run_for(outage)
    recovered_at = drill.clock.now
    cleared_at = drill.drain()
    return drill.result(started=started, recovered_at=recovered_at, cleared_at=cleared_at)


def mixed_faults_drill(engine: Engine, fake: FakeProviders, *, seed: int, rate: float = 0.25) -> DrillResult:
    """Every request meets a random fault with probability ``rate``: rate limits, 500/503 before or
    after processing, resets before or after processing, answers slower than the client waits."""
    rng = random.Random(seed)
    kinds = [
        Fault.rate_limit(reset_in=2),
        Fault.server_error(500, processed=True),
        Fault.server_error(503),
        Fault.drop_processed(),
        Fault.drop_unprocessed(),
        Fault.slow(0.5),
    ]
    expected = len(RELAY_STEPS) * _enrollments(engine)
    for provider in (SENDGRID, TWILIO):
        fake.script(provider, [rng.choice(kinds) if rng.random() < rate else None for _ in range(expected)])
    started = time.perf_counter()
    drill = FaultDrill(engine, fake)
    drill.drain()
    return drill.result(started=started)


def _enrollments(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(ENROLLMENTS)) or 0)


@contextmanager
def black_hole() -> Iterator[str]:
    """A server that accepts connections, reads, and never answers: a timeout before any provider
    saw the request. Yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()
