"""The ground truth of the reliability tests: seed a sequence, reconcile ``unknown`` rows against the
provider's own record of what it received, and audit the outbox against that record.

A provider receipt is a request the fake provider *processed* (what a recipient may actually
receive). Every audit counts, per due step (enrollment, cycle, step): duplicates (more than one
receipt) and losses (none), and lists every inconsistency left in the database.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, RowMapping, func, select, update

from benchmarks.common import LEADS, lead_rows
from channels.webhooks import NormalizedEvent, dedup_key
from models.tables import Enrollment, EventType, OutboxMessage, OutboxState
from sequences.catalog import SequenceCatalog
from spirale.enrollment import enroll_leads
from spirale.events import store_events
from spirale.reconcile import reconcile_unknown
from spirale.settings import Settings
from tests.fakes.providers import SENDGRID, FakeProviders

FIXTURES = Path(__file__).parent / "fixtures"
RELAY = "relay"
RELAY_STEPS = ("hello", "ping", "bye")
SINGLE = "single"  # one email step
# Monday 2026-12-07, 09:00 in Paris: inside every send window for hours.
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
ENROLLMENTS = Enrollment.__table__  # type: ignore[attr-defined]
RECONCILE_SETTINGS = Settings(sequences_dir=FIXTURES)
IN_FLIGHT = (OutboxState.PENDING.value, OutboxState.SENDING.value, OutboxState.UNKNOWN.value)
StepKey = tuple[uuid.UUID, int, str]


def seed_relay(
    engine: Engine, leads: int, *, now: datetime = T0, sequence: str = RELAY, first: int = 0
) -> int:
    """``leads`` consenting leads (numbered from ``first``) enrolled at ``now`` in the three-step
    ``relay`` sequence, or in ``sequence``."""
    catalog = SequenceCatalog.open(FIXTURES)
    rows = lead_rows(first, leads, now - timedelta(days=1))
    lead_ids = [row["id"] for row in rows]
    with engine.begin() as conn:
        conn.execute(LEADS.insert(), rows)
        result = enroll_leads(
            conn,
            lead_ids=lead_ids,
            sequence=catalog.get(sequence),
            version=catalog.version(sequence),
            now=now,
        )
    return result.enrolled


def receipts(fake: FakeProviders) -> Counter[str]:
    """Processed requests per outbox id, across both providers."""
    return Counter(r.outbox_id for r in fake.processed() if r.outbox_id)


@dataclass(frozen=True)
class Reconciled:
    """What a reconciliation did with the ``unknown`` rows."""

    sent: int
    resend: int


def provider_events(fake: FakeProviders, outbox_ids: set[str]) -> list[NormalizedEvent]:
    """The events the providers' webhooks would post about these messages, had they received
    them: SendGrid ``processed``, a Twilio status callback."""
    return [
        NormalizedEvent(
            type=EventType.PROCESSED if request.provider == SENDGRID else EventType.SMS_STATUS,
            dedup_key=dedup_key(request.provider, request.message_id, "processed"),
            occurred_at=T0,
            provider=request.provider,
            outbox_id=request.outbox_id,
            provider_message_id=request.message_id,
            payload={"event": "processed", "MessageStatus": "accepted"},
        )
        for request in fake.processed()
        if request.outbox_id in outbox_ids
    ]


def reconcile_from_provider(engine: Engine, fake: FakeProviders, *, now: datetime) -> Reconciled:
    """Settle ``unknown`` rows as production does, from the provider's own record.

    The webhook events the provider would post are stored, then ``spirale.reconcile`` confirms the
    rows they prove ``sent``. A row the provider certainly never received (the fake's record is
    complete, like a message lookup) fails with a ``retry_at``: recovery sends it again as a new
    attempt. Without such certainty production keeps the row ``unknown``, then fails it for lack
    of evidence, never resending it blindly."""
    with engine.connect() as conn:
        unknown = {
            str(i) for i in conn.execute(select(OUTBOX.c.id).where(OUTBOX.c.state == "unknown")).scalars()
        }
    if not unknown:
        return Reconciled(sent=0, resend=0)
    events = provider_events(fake, unknown)
    return settle_unknown(engine, events, received={e.outbox_id for e in events if e.outbox_id}, now=now)


def settle_unknown(
    engine: Engine, events: list[NormalizedEvent], *, received: set[str], now: datetime
) -> Reconciled:
    """Store ``events``, run the reconciliation, then retry what was certainly never ``received``."""
    with engine.begin() as conn:
        store_events(conn, events, received_at=now)
    report = reconcile_unknown(engine, now=now, settings=RECONCILE_SETTINGS, channels={})
    resend = 0
    with engine.begin() as conn:
        waiting = conn.execute(select(OUTBOX.c.id).where(OUTBOX.c.state == OutboxState.UNKNOWN.value))
        for (row_id,) in waiting.all():
            if str(row_id) in received:
                continue
            resend += 1
            conn.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == row_id, OUTBOX.c.state == OutboxState.UNKNOWN.value)
                .values(state="failed", error_code="not_sent", retry_at=now, updated_at=now)
            )
    return Reconciled(sent=sum(report.confirmed.values()), resend=resend)


def backlog(engine: Engine) -> int:
    """Outbox rows in flight or waiting for a retry."""
    with engine.connect() as conn:
        waiting = conn.scalar(
            select(func.count()).where((OUTBOX.c.state.in_(IN_FLIGHT)) | (OUTBOX.c.retry_at.is_not(None)))
        )
    return int(waiting or 0)


def quiescent(engine: Engine) -> bool:
    """Nothing left to do: no active enrollment, no row in flight or waiting for a retry."""
    with engine.connect() as conn:
        active = conn.scalar(select(func.count()).where(ENROLLMENTS.c.state == "active"))
    return active == 0 and backlog(engine) == 0


def next_wakeup(engine: Engine, now: datetime, lease: timedelta) -> datetime:
    """The next instant at which a dispatcher has something to do (at least one second ahead)."""
    with engine.connect() as conn:
        instants = [
            conn.scalar(select(func.min(ENROLLMENTS.c.next_due_at)).where(ENROLLMENTS.c.state == "active")),
            conn.scalar(select(func.min(ENROLLMENTS.c.lease_until)).where(ENROLLMENTS.c.lease_until > now)),
            conn.scalar(select(func.min(OUTBOX.c.retry_at))),
        ]
        stale = conn.scalar(select(func.min(OUTBOX.c.updated_at)).where(OUTBOX.c.state.in_(IN_FLIGHT)))
    if stale is not None:
        instants.append(stale + lease + timedelta(seconds=1))
    soonest = min((at for at in instants if at is not None), default=now)
    return max(soonest, now + timedelta(seconds=1))


@dataclass
class Audit:
    """The outbox against the provider's record, per due step."""

    expected: int
    requests: int
    processed: int
    attempts: int
    duplicates: int
    losses: int
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.duplicates == 0 and self.losses == 0 and not self.problems


def audit(engine: Engine, fake: FakeProviders, steps: Iterable[str] = RELAY_STEPS) -> Audit:
    """Every due step received exactly once, and a database that says so."""
    with engine.connect() as conn:
        rows = conn.execute(select(OUTBOX)).mappings().all()
        enrollments = conn.execute(select(ENROLLMENTS)).mappings().all()
    step_ids = tuple(steps)
    key_of: dict[str, StepKey] = {str(r["id"]): (r["enrollment_id"], r["cycle"], r["step_id"]) for r in rows}
    received = receipts(fake)
    per_key: Counter[StepKey] = Counter()
    problems: list[str] = []
    for outbox_id, count in received.items():
        if outbox_id not in key_of:
            problems.append(f"the provider received outbox id {outbox_id}, which the database does not know")
            continue
        per_key[key_of[outbox_id]] += count
    expected = {(e["id"], 0, step) for e in enrollments for step in step_ids}
    problems += _row_problems(rows, received) + _enrollment_problems(enrollments, len(step_ids))
    return Audit(
        expected=len(expected),
        requests=len(fake.requests()),
        processed=sum(received.values()),
        attempts=len(rows),
        duplicates=sum(count - 1 for count in per_key.values() if count > 1),
        losses=len(expected - set(per_key)),
        problems=problems,
    )


def _row_problems(rows: Iterable[RowMapping], received: Counter[str]) -> list[str]:
    problems = []
    sent_per_key: Counter[tuple[Any, Any, Any]] = Counter()
    for row in rows:
        state, row_id = row["state"], str(row["id"])
        if state in IN_FLIGHT or row["retry_at"] is not None:
            problems.append(f"outbox {row_id} left {state} (retry_at {row['retry_at']})")
        if state == OutboxState.SENT.value:
            sent_per_key[(row["enrollment_id"], row["cycle"], row["step_id"])] += 1
            if received[row_id] != 1:
                problems.append(
                    f"outbox {row_id} is sent but the provider processed it {received[row_id]} times"
                )
    problems += [f"{key} has {n} sent rows" for key, n in sent_per_key.items() if n != 1]
    return problems


def _enrollment_problems(enrollments: Iterable[RowMapping], steps: int) -> list[str]:
    return [
        f"enrollment {e['id']} is {e['state']} at step {e['step_index']} (claimed by {e['claimed_by']})"
        for e in enrollments
        if e["state"] != "completed" or e["step_index"] != steps or e["claimed_by"] is not None
    ]
