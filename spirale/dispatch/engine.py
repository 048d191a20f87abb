"""The dispatch engine.

One batch runs four short transactions, so that no message is ever sent twice and none is lost:

1. **claim**: ``claim_due`` leases up to N due enrollments to this worker (``models/claims.py``).
2. **decide**: checks at send time (exit conditions, suppression, consent, ``if``, window,
   frequency cap, variant), renders, then in ONE transaction inserts the outbox rows as
   ``pending`` (UNIQUE per enrollment/cycle/step/attempt) and advances the enrollments, fenced
   on this worker's lease.
3. **sending**: marks the batch's rows ``sending`` and commits *before* any provider call.
4. **record**: sends through the channels and records ``sent | failed | unknown`` (and suppresses
   addresses the provider reports as opted out).

A crash before 3 leaves ``pending`` rows (never sent: ``recovery.py`` sends them); a crash after 3
leaves ``sending`` rows that become ``unknown`` and are reconciled, never resent blindly.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from channels.base import AnyChannel as DeliveryChannel
from models.claims import ClaimedEnrollment, claim_due, release
from models.suppressions import address_hash, suppressed_hashes
from models.tables import EnrollmentState, Event, Lead, OutboxMessage, OutboxState, VariantAssignment
from scoring.promotion import current_promotions
from sequences.catalog import SequenceCatalog
from spirale.dispatch.batch import BatchWrites
from spirale.dispatch.decide import EXIT_EVENT_TYPES, BatchFacts, StepDecider, lead_facts
from spirale.dispatch.messages import MessageBuilder
from spirale.dispatch.recovery import Recovery
from spirale.dispatch.report import DispatchReport
from spirale.dispatch.sending import SendRecorder
from spirale.dispatch.writes import LeaseLostError, flush_decisions
from spirale.errors import SequenceError
from spirale.settings import Settings

LEAD_COLUMNS = (
    Lead.__table__.c.id,  # type: ignore[attr-defined]
    Lead.__table__.c.email,  # type: ignore[attr-defined]
    Lead.__table__.c.phone,  # type: ignore[attr-defined]
    Lead.__table__.c.first_name,  # type: ignore[attr-defined]
    Lead.__table__.c.last_name,  # type: ignore[attr-defined]
    Lead.__table__.c.company,  # type: ignore[attr-defined]
    Lead.__table__.c.job_title,  # type: ignore[attr-defined]
    Lead.__table__.c.country,  # type: ignore[attr-defined]
    Lead.__table__.c.timezone,  # type: ignore[attr-defined]
    Lead.__table__.c.status,  # type: ignore[attr-defined]
    Lead.__table__.c.owner,  # type: ignore[attr-defined]
    Lead.__table__.c.consent_email,  # type: ignore[attr-defined]
    Lead.__table__.c.consent_sms,  # type: ignore[attr-defined]
)
LIVE_SEND_STATES = (OutboxState.PENDING.value, OutboxState.SENDING.value, OutboxState.SENT.value, "unknown")


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Dispatcher:
    """Everything a dispatch tick needs; build one per process and call ``dispatch_due(now=...)``."""

    engine: Engine
    catalog: SequenceCatalog
    channels: Mapping[str, DeliveryChannel]
    settings: Settings
    worker_id: str = field(default_factory=default_worker_id)

    def __post_init__(self) -> None:
        self.builder = MessageBuilder(
            renderer=self.catalog.renderer,
            settings=self.settings,
            providers={kind: channel.name for kind, channel in self.channels.items()},
        )
        self.recorder = SendRecorder(engine=self.engine, channels=self.channels, settings=self.settings)
        self.lease = timedelta(seconds=self.settings.claim_lease_seconds)
        self.cap_window = timedelta(hours=self.settings.frequency_cap_hours)
        self.recovery = Recovery(
            catalog=self.catalog,
            builder=self.builder,
            recorder=self.recorder,
            lease=self.lease,
        )

    def dispatch_due(self, *, now: datetime, max_batches: int | None = None) -> DispatchReport:
        """Send every step due at ``now`` (in batches), then return what happened."""
        report = DispatchReport()
        self.recovery.run(now=now, report=report)
        batches = 0
        while max_batches is None or batches < max_batches:
            claimed = self.claim(now)
            if not claimed:
                break
            batches += 1
            report.claimed += len(claimed)
            self.process(claimed, now=now, report=report)
        report.batches = batches
        return report

    def claim(self, now: datetime) -> list[ClaimedEnrollment]:
        """Lease the next batch of due enrollments to this worker (committed)."""
        with self.engine.begin() as conn:
            return claim_due(
                conn,
                now=now,
                worker_id=self.worker_id,
                limit=self.settings.dispatch_batch_size,
                lease=self.lease,
            )

    def process(self, claimed: Sequence[ClaimedEnrollment], *, now: datetime, report: DispatchReport) -> None:
        """Decide, write, send and record one claimed batch."""
        writes = self.decide(claimed, now=now, report=report)
        try:
            with self.engine.begin() as conn:
                flush_decisions(conn, writes)
        except LeaseLostError:
            # Nothing of this batch was written; the rows are (or will be) another worker's.
            report.skipped["lease lost"] += len(claimed)
            self.release([row.id for row in claimed])
            return
        self.recorder.send_and_record(writes.sends, now=now, report=report)

    def decide(
        self, claimed: Sequence[ClaimedEnrollment], *, now: datetime, report: DispatchReport
    ) -> BatchWrites:
        """Run every send-time check on a claimed batch and render its messages (no writes)."""
        writes = BatchWrites(now=now, worker_id=self.worker_id)
        with self.engine.connect() as conn:
            facts = self._load_facts(conn, claimed, now)
        decider = StepDecider(
            facts=facts,
            writes=writes,
            report=report,
            builder=self.builder,
            cap_count=self.settings.frequency_cap_count,
            cap_window=self.cap_window,
        )
        for row in claimed:
            try:
                sequence = self.catalog.get(row.sequence_name)
            except SequenceError as exc:
                # Paused, not dropped: the operator fixes the file and resumes the enrollments.
                report.exited["sequence unavailable"] += 1
                writes.advance(
                    row.id,
                    step_index=row.step_index,
                    cycle=row.cycle,
                    next_due_at=row.next_due_at,
                    last_step_at=row.last_step_at,
                    state=EnrollmentState.PAUSED,
                    exit_reason=f"sequence unavailable: {exc}"[:500],
                )
                continue
            decider.decide(row, sequence)
        return writes

    def _load_facts(
        self, conn: Connection, claimed: Sequence[ClaimedEnrollment], now: datetime
    ) -> BatchFacts:
        lead_ids = list({row.lead_id for row in claimed})
        leads = {
            row["id"]: lead_facts(row)
            for row in conn.execute(select(*LEAD_COLUMNS).where(LEAD_COLUMNS[0].in_(lead_ids))).mappings()
        }
        return BatchFacts(
            leads=leads,
            suppressed=self._suppressed(conn, leads.values()),
            recent_sends=self._recent_sends(conn, lead_ids, now),
            assignments=self._assignments(conn, lead_ids),
            exit_events=self._exit_events(conn, lead_ids),
            promotions=current_promotions(conn),
        )

    @staticmethod
    def _suppressed(conn: Connection, leads: Any) -> dict[str, set[str]]:
        by_channel: dict[str, set[str]] = {"email": set(), "sms": set()}
        for lead in leads:
            if lead["email"]:
                by_channel["email"].add(address_hash("email", lead["email"]))
            if lead["phone"]:
                by_channel["sms"].add(address_hash("sms", lead["phone"]))
        return {
            channel: suppressed_hashes(conn, channel=channel, hashes=hashes) if hashes else set()
            for channel, hashes in by_channel.items()
        }

    def _recent_sends(
        self, conn: Connection, lead_ids: list[uuid.UUID], now: datetime
    ) -> dict[uuid.UUID, list[datetime]]:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        query = select(table.c.lead_id, table.c.created_at).where(
            table.c.lead_id.in_(lead_ids),
            table.c.created_at > now - self.cap_window,
            table.c.transactional.is_(False),
            table.c.state.in_(LIVE_SEND_STATES),
        )
        recent: dict[uuid.UUID, list[datetime]] = {}
        for lead_id, created_at in conn.execute(query):
            recent.setdefault(lead_id, []).append(created_at)
        return recent

    @staticmethod
    def _assignments(conn: Connection, lead_ids: list[uuid.UUID]) -> dict[tuple[uuid.UUID, str, str], str]:
        table = VariantAssignment.__table__  # type: ignore[attr-defined]
        query = select(table.c.lead_id, table.c.sequence_name, table.c.step_id, table.c.variant).where(
            table.c.lead_id.in_(lead_ids)
        )
        return {(lead, seq, step): variant for lead, seq, step, variant in conn.execute(query)}

    @staticmethod
    def _exit_events(
        conn: Connection, lead_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, list[tuple[str, datetime]]]:
        table = Event.__table__  # type: ignore[attr-defined]
        query = select(table.c.lead_id, table.c.type, table.c.occurred_at).where(
            table.c.lead_id.in_(lead_ids), table.c.type.in_([str(t) for t in EXIT_EVENT_TYPES])
        )
        events: dict[uuid.UUID, list[tuple[str, datetime]]] = {}
        for lead_id, event_type, occurred_at in conn.execute(query):
            events.setdefault(lead_id, []).append((event_type, occurred_at))
        return events

    def release(self, ids: Sequence[uuid.UUID]) -> None:
        with self.engine.begin() as conn:
            release(conn, ids=ids, worker_id=self.worker_id)


def dispatch_due(dispatcher: Dispatcher, *, now: datetime, max_batches: int | None = None) -> DispatchReport:
    """Functional entry point: ``dispatch_due(dispatcher, now=...)``."""
    return dispatcher.dispatch_due(now=now, max_batches=max_batches)
