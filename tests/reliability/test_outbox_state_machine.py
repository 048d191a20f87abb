"""A hypothesis state machine over the outbox: leads enrolled at any moment, dispatcher ticks, crashes
after the claim, after the decisions, after ``sending`` and after the provider accepted, provider
faults, suppressions, webhook events (delivered, clicks, replies, unsubscribes, STOP) in any order,
and reconciliation. Whatever happens:

- the provider never receives one due step (enrollment, cycle, step) twice, and the database never
  holds two ``sent`` rows for it;
- nothing reaches an address after it was suppressed (even a retry, or a message left ``pending``
  by a crash), and no step decided after the lead replied or unsubscribed is sent;
- once the providers behave and the clock runs on, nothing due is lost: every step the engine
  decided ends received exactly once, suppressed, or refused for good by the provider.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, select, text

from benchmarks.common import LEADS, lead_rows
from channels.base import ChannelKind, SendOutcome, SendResult
from channels.webhooks import NormalizedEvent
from models.suppressions import is_suppressed, suppress
from models.tables import EventType
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher, DispatchReport
from spirale.dispatch.writes import flush_decisions
from spirale.enrollment import enroll_leads
from spirale.errors import ChannelError, PermanentSendError, RetryableSendError, UnknownOutcomeError
from spirale.events import process_events, store_events
from spirale.settings import Settings
from tests.reliability.ledger import (
    ENROLLMENTS,
    FIXTURES,
    OUTBOX,
    RELAY,
    RELAY_STEPS,
    T0,
    next_wakeup,
    settle_unknown,
)

pytestmark = pytest.mark.db

LEASE = timedelta(seconds=5)
REFUSED_FOR_GOOD = "refused-for-good"
FAULTS = (
    "ok",
    "retryable",
    "unknown-processed",
    "unknown-unprocessed",
    "permanent",
    "crash-before",
    "crash-after",
)
WIPED = ("events", "outbox", "variant_assignments", "sales_tasks", "enrollments", "suppressions", "leads")
EXIT_EVENTS = {"reply": EventType.REPLY, "unsubscribe": EventType.UNSUBSCRIBE, "stop": EventType.SMS_STOP}


class Crash(BaseException):
    """The dispatcher process dies here: nothing after this point runs."""


@dataclass(frozen=True)
class Receipt:
    outbox_id: str
    to: str
    at: datetime


class Provider:
    """Both providers in one: what they received, and the faults they will answer with next."""

    def __init__(self, now: datetime) -> None:
        self.receipts: list[Receipt] = []
        self.faults: deque[str] = deque()
        self.now = now  # the machine's clock: when a message is received

    def channel(self, kind: ChannelKind) -> ProviderChannel:
        return ProviderChannel(kind, self)

    def answer(self, message: Any) -> SendResult:
        fault = self.faults.popleft() if self.faults else "ok"
        if fault in ("ok", "unknown-processed", "crash-after"):
            self.receipts.append(Receipt(message.outbox_id, message.to, self.now))
        if fault == "ok":
            return SendResult(f"p-{message.outbox_id}")
        if fault in ("crash-before", "crash-after"):
            raise Crash
        if fault == "retryable":
            raise RetryableSendError("429", channel="p", status_code=429, retry_after=30)
        if fault == "permanent":
            raise PermanentSendError("refused", channel="p", provider_code=REFUSED_FOR_GOOD)
        raise UnknownOutcomeError("timeout", channel="p")


class ProviderChannel:
    def __init__(self, kind: ChannelKind, provider: Provider) -> None:
        self.kind, self.provider, self.name = kind, provider, f"p-{kind}"

    def send(self, message: Any) -> SendResult:
        return self.provider.answer(message)

    def send_many(self, messages: Sequence[Any]) -> list[SendOutcome]:
        outcomes = []
        for message in messages:
            try:
                outcomes.append(SendOutcome(message.outbox_id, self.send(message), None))
            except ChannelError as exc:
                outcomes.append(SendOutcome(message.outbox_id, None, exc))
        return outcomes


class OutboxMachine(RuleBasedStateMachine):
    """The outbox under every interleaving of the rules below."""

    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        with self.engine.begin() as conn:
            for table in WIPED:
                conn.execute(text(f"DELETE FROM {table}"))
        self.now = T0
        self.catalog = SequenceCatalog.open(FIXTURES)
        self.provider = Provider(self.now)
        self.settings = Settings(
            sequences_dir=FIXTURES,
            public_url="https://spirale.example",
            secret_key="machine-secret",
            dispatch_batch_size=4,
            claim_lease_seconds=int(LEASE.total_seconds()),
            frequency_cap_count=10,
            send_max_attempts=1000,
        )
        self.dispatcher = self.restart()
        self.leads: list[dict[str, Any]] = []
        self.blocked: dict[str, datetime] = {}  # address -> when it was suppressed
        self.exited: dict[uuid.UUID, datetime] = {}  # lead -> when it replied or unsubscribed

    def restart(self) -> Dispatcher:
        channels = {kind.value: self.provider.channel(kind) for kind in ChannelKind}
        self.dispatcher = Dispatcher(
            engine=self.engine, catalog=self.catalog, channels=channels, settings=self.settings
        )
        return self.dispatcher

    def advance(self, seconds: int = 1) -> None:
        # Every rule moves the clock on, so "after a suppression" is a strict comparison.
        self.now += timedelta(seconds=seconds)
        self.provider.now = self.now

    # -- rules ---------------------------------------------------------------------------------------
    @rule(n=st.integers(1, 3))
    def trigger(self, n: int) -> None:
        self.advance()
        rows = lead_rows(len(self.leads), n, self.now)
        with self.engine.begin() as conn:
            conn.execute(LEADS.insert(), rows)
            sequence = self.catalog.get(RELAY)
            enroll_leads(
                conn, lead_ids=[r["id"] for r in rows], sequence=sequence, version="v1", now=self.now
            )
        self.leads += rows

    @rule(seconds=st.sampled_from([1, 6, 31]))
    def tick(self, seconds: int) -> None:
        self.dispatch(seconds)

    @rule(seconds=st.sampled_from([61, 600]))
    def tick_later(self, seconds: int) -> None:
        self.dispatch(seconds)

    def dispatch(self, seconds: int) -> None:
        self.advance(seconds)
        try:
            self.dispatcher.dispatch_due(now=self.now)
        except Crash:
            self.restart()

    @rule()
    def crash_after_claim(self) -> None:
        self.advance()
        self.dispatcher.claim(self.now)
        self.restart()

    @rule()
    def crash_after_decisions(self) -> None:
        self.advance()
        claimed = self.dispatcher.claim(self.now)
        writes = self.dispatcher.decide(claimed, now=self.now, report=DispatchReport())
        with self.engine.begin() as conn:
            flush_decisions(conn, writes)
        self.restart()

    @rule(faults=st.lists(st.sampled_from(FAULTS), min_size=1, max_size=4))
    def provider_faults(self, faults: list[str]) -> None:
        self.provider.faults.extend(faults)

    @precondition(lambda self: self.leads)
    @rule(pick=st.integers(0, 10_000), channel=st.sampled_from(["email", "sms"]))
    def suppression(self, pick: int, channel: str) -> None:
        self.advance()
        lead = self.leads[pick % len(self.leads)]
        address = lead["email"] if channel == "email" else lead["phone"]
        with self.engine.begin() as conn:
            suppress(conn, channel=channel, address=address, reason="opt-out", source="machine", now=self.now)
        self.blocked.setdefault(address, self.now)

    @precondition(lambda self: self.leads)
    @rule(pick=st.integers(0, 10_000), kind=st.sampled_from(["delivered", "click", *EXIT_EVENTS]))
    def webhook_event(self, pick: int, kind: str) -> None:
        """A provider webhook about a lead, stored and processed as the API and the events flow do;
        a ``delivered`` may come before the dispatcher recorded the send."""
        self.advance()
        lead = self.leads[pick % len(self.leads)]
        receipt = next((r for r in self.provider.receipts if r.to in (lead["email"], lead["phone"])), None)
        if kind == "delivered" and receipt is None:
            return
        # STOP is an inbound SMS; an unsubscribe, a click or a reply concern email.
        sms = kind == "stop" or (kind == "delivered" and receipt is not None and receipt.to == lead["phone"])
        event = NormalizedEvent(
            type=EXIT_EVENTS.get(kind, EventType.DELIVERED if kind == "delivered" else EventType.CLICK),
            dedup_key=uuid.uuid4().hex,
            occurred_at=self.now,
            provider="twilio" if sms else "sendgrid",
            address=lead["phone"] if sms else lead["email"],
            outbox_id=receipt.outbox_id if receipt and kind == "delivered" else None,
            lead_hint=str(lead["id"]),
        )
        with self.engine.begin() as conn:
            store_events(conn, [event], received_at=self.now)
        process_events(self.engine, now=self.now, settings=self.settings, catalog=self.catalog, channels={})
        if kind in ("unsubscribe", "stop"):
            channel, address = ("sms" if sms else "email"), event.address or ""
            with self.engine.connect() as conn:
                assert is_suppressed(conn, channel=channel, address=address), f"{kind} did not suppress"
            self.blocked.setdefault(address, self.now)
        if kind in EXIT_EVENTS:
            self.exited.setdefault(lead["id"], self.now)

    @rule()
    def reconcile(self) -> None:
        self.advance()
        reconcile_from_receipts(self.engine, self.provider, self.now)

    # -- invariants ----------------------------------------------------------------------------------
    def rows(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return {str(r["id"]): r for r in conn.execute(select(OUTBOX)).mappings()}

    @invariant()
    def never_twice(self) -> None:
        rows = self.rows()
        received = Counter(key(rows[r.outbox_id]) for r in self.provider.receipts)
        assert [k for k, n in received.items() if n > 1] == []
        sent = Counter(key(r) for r in rows.values() if r["state"] == "sent")
        assert [k for k, n in sent.items() if n > 1] == []
        unreceived = [i for i, r in rows.items() if r["state"] == "sent" and received[key(r)] != 1]
        assert unreceived == []

    @invariant()
    def never_after_an_opt_out(self) -> None:
        never = datetime.max.replace(tzinfo=self.now.tzinfo)
        late = [r for r in self.provider.receipts if r.at > self.blocked.get(r.to, never)]
        assert late == []

    @invariant()
    def never_decided_after_an_exit(self) -> None:
        never = datetime.max.replace(tzinfo=self.now.tzinfo)
        rows = self.rows()
        for receipt in self.provider.receipts:
            row = rows[receipt.outbox_id]
            # A new attempt of a step decided before the exit is a retry, not a new decision.
            decided = row["created_at"] if row["attempt"] == 1 else None
            assert decided is None or decided <= self.exited.get(row["lead_id"], never)

    def teardown(self) -> None:
        """Let the providers behave and the clock run until nothing is left: still never twice,
        never after an opt-out, and nothing lost."""
        self.provider.faults.clear()
        self.drain()
        self.never_twice()
        self.never_after_an_opt_out()
        rows = self.rows()
        received = Counter(r.outbox_id for r in self.provider.receipts)
        settled: set[tuple[Any, ...]] = set()
        for row in rows.values():
            done = received[str(row["id"])] == 1 or row["state"] == "suppressed"
            # A retry whose enrollment exited meanwhile (a reply) is closed on purpose, not lost.
            if done or row["error_code"] in (REFUSED_FOR_GOOD, "exited"):
                settled.add(key(row))
        lost = {key(r) for r in rows.values()} - settled
        assert lost == set(), f"decided steps never sent: {lost}"
        with self.engine.connect() as conn:
            enrollments = conn.execute(select(ENROLLMENTS)).mappings().all()
        for enrollment in enrollments:
            assert enrollment["state"] in ("completed", "exited")
            if enrollment["state"] == "completed":
                assert {s for e, _, s in settled if e == enrollment["id"]} == set(RELAY_STEPS)

    def drain(self) -> None:
        for _ in range(200):
            reconcile_from_receipts(self.engine, self.provider, self.now)
            with self.engine.connect() as conn:
                active = conn.execute(select(ENROLLMENTS.c.id).where(ENROLLMENTS.c.state == "active")).first()
                waiting = conn.execute(
                    select(OUTBOX.c.id).where(
                        OUTBOX.c.state.in_(["pending", "sending", "unknown"]) | OUTBOX.c.retry_at.is_not(None)
                    )
                ).first()
            if active is None and waiting is None:
                return
            # The provider's clock moves with the dispatcher's: a receipt is stamped with the instant
            # it happened, or a send right after the last opt-out would look simultaneous with it.
            self.now = self.provider.now = next_wakeup(self.engine, self.now, LEASE)
            self.dispatcher.dispatch_due(now=self.now)
        raise AssertionError("the outbox did not drain")


def key(row: Any) -> tuple[Any, ...]:
    return (row["enrollment_id"], row["cycle"], row["step_id"])


def reconcile_from_receipts(engine: Engine, provider: Provider, now: datetime) -> None:
    """Settle ``unknown`` rows through ``spirale.reconcile``, from the events the providers would
    post about what they received; what they certainly never received is retried."""
    events = [
        NormalizedEvent(
            type=EventType.PROCESSED,
            dedup_key=f"processed:{r.outbox_id}",
            occurred_at=r.at,
            provider="twilio" if r.to.startswith("+") else "sendgrid",
            outbox_id=r.outbox_id,
        )
        for r in provider.receipts
    ]
    settle_unknown(engine, events, received={r.outbox_id for r in provider.receipts}, now=now)


def test_the_outbox_never_sends_twice_never_after_an_opt_out_and_loses_nothing(engine: Engine) -> None:
    OutboxMachine.engine = engine
    run_state_machine_as_test(
        OutboxMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,  # the same cases on every run: CI is reproducible
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
